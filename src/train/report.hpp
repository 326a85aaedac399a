#pragma once
// {dump_folder}/report.html: one self-contained page a run leaves behind (no scripts, no network,
// nothing to install): the run's summary, the loss, grad-norm, learning-rate and tokens/s curves
// as inline SVG, the validation losses, and the plan the run printed at start-up.
#include <cstdint>
#include <string>
#include <vector>

namespace titan::train {

struct ReportRow {
  std::int64_t step = 0;
  double loss = 0, grad_norm = 0, lr = 0, tps = 0;
};

struct ReportInput {
  std::string title;        // job.description
  std::string summary;      // one line: steps, time, loss first -> last, where it ran
  std::string plan;         // plan_text(): shown as preformatted text
  std::vector<ReportRow> rows;                                  // the logged steps, in order
  std::vector<std::pair<std::int64_t, double>> validation;      // (step, loss)
};

// One SVG line chart of ys over xs (same length), axes labelled with their ranges. Non-finite
// points are left out; an empty series draws the frame and says so.
std::string svg_line_chart(const std::string& title, const std::vector<double>& xs, const std::vector<double>& ys);

// The whole page.
std::string render_report(const ReportInput& in);

// Escapes &, <, >, " for HTML text and attributes.
std::string html_escape(const std::string& s);

}  // namespace titan::train
