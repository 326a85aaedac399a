#include "train/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace titan::train {

namespace {

// Chart geometry (SVG user units): the plot area sits inside margins that hold the tick labels.
constexpr double kWidth = 460, kHeight = 240, kLeft = 64, kRight = 16, kTop = 28, kBottom = 36;

std::string num(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (v == 0) return "0";
  if (a >= 1e5 || a < 1e-3) std::snprintf(buf, sizeof buf, "%.2e", v);
  else if (a >= 100) std::snprintf(buf, sizeof buf, "%.0f", v);
  else std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string coord(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

}  // namespace

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string svg_line_chart(const std::string& title, const std::vector<double>& xs, const std::vector<double>& ys) {
  std::vector<std::pair<double, double>> pts;
  for (std::size_t i = 0; i < xs.size() && i < ys.size(); ++i)
    if (std::isfinite(xs[i]) && std::isfinite(ys[i])) pts.emplace_back(xs[i], ys[i]);
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 " + coord(kWidth) + " " +
                    coord(kHeight) + "\" width=\"" + coord(kWidth) + "\" height=\"" + coord(kHeight) + "\" role=\"img\">";
  svg += "<title>" + html_escape(title) + "</title>";
  svg += "<text x=\"" + coord(kLeft) + "\" y=\"18\" class=\"ct\">" + html_escape(title) + "</text>";
  const double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  svg += "<rect x=\"" + coord(kLeft) + "\" y=\"" + coord(kTop) + "\" width=\"" + coord(pw) + "\" height=\"" + coord(ph) +
         "\" class=\"frame\"/>";
  if (pts.empty()) {
    svg += "<text x=\"" + coord(kLeft + pw / 2) + "\" y=\"" + coord(kTop + ph / 2) +
           "\" text-anchor=\"middle\" class=\"tick\">no data</text></svg>";
    return svg;
  }
  double x0 = pts.front().first, x1 = x0, y0 = pts.front().second, y1 = y0;
  for (const auto& [x, y] : pts) {
    x0 = std::min(x0, x);
    x1 = std::max(x1, x);
    y0 = std::min(y0, y);
    y1 = std::max(y1, y);
  }
  // A flat series or a single point still gets a visible range.
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) {
    const double pad = y0 == 0 ? 1 : std::fabs(y0) * 0.05;
    y0 -= pad;
    y1 += pad;
  }
  auto px = [&](double x) { return kLeft + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return kTop + ph - (y - y0) / (y1 - y0) * ph; };
  // Four horizontal grid lines with their values, and the x range at the ends.
  for (int i = 0; i <= 4; ++i) {
    const double v = y0 + (y1 - y0) * i / 4.0;
    const double yy = py(v);
    svg += "<line x1=\"" + coord(kLeft) + "\" x2=\"" + coord(kLeft + pw) + "\" y1=\"" + coord(yy) + "\" y2=\"" + coord(yy) +
           "\" class=\"grid\"/>";
    svg += "<text x=\"" + coord(kLeft - 6) + "\" y=\"" + coord(yy + 4) + "\" text-anchor=\"end\" class=\"tick\">" + num(v) +
           "</text>";
  }
  const double base = kTop + ph + 16;
  svg += "<text x=\"" + coord(kLeft) + "\" y=\"" + coord(base) + "\" class=\"tick\">step " + num(x0) + "</text>";
  svg += "<text x=\"" + coord(kLeft + pw) + "\" y=\"" + coord(base) + "\" text-anchor=\"end\" class=\"tick\">step " +
         num(x1) + "</text>";
  // A long run keeps the page small: past kMaxPoints, each of kMaxPoints / 2 runs of points is
  // drawn as its lowest and highest point (in step order), so spikes stay visible.
  constexpr std::size_t kMaxPoints = 2000;
  if (pts.size() > kMaxPoints) {
    std::vector<std::pair<double, double>> thin;
    const std::size_t buckets = kMaxPoints / 2;
    for (std::size_t b = 0; b < buckets; ++b) {
      const std::size_t lo = b * pts.size() / buckets, hi = (b + 1) * pts.size() / buckets;
      std::size_t mn = lo, mx = lo;
      for (std::size_t i = lo; i < hi; ++i) {
        if (pts[i].second < pts[mn].second) mn = i;
        if (pts[i].second > pts[mx].second) mx = i;
      }
      thin.push_back(pts[std::min(mn, mx)]);
      if (mn != mx) thin.push_back(pts[std::max(mn, mx)]);
    }
    pts = std::move(thin);
  }
  std::string points;
  for (const auto& [x, y] : pts) points += (points.empty() ? "" : " ") + coord(px(x)) + "," + coord(py(y));
  svg += "<polyline points=\"" + points + "\" class=\"line\"/>";
  if (pts.size() == 1)
    svg += "<circle cx=\"" + coord(px(pts[0].first)) + "\" cy=\"" + coord(py(pts[0].second)) + "\" r=\"3\" class=\"dot\"/>";
  svg += "</svg>";
  return svg;
}

std::string render_report(const ReportInput& in) {
  std::vector<double> step, loss, gnorm, lr, tps;
  for (const auto& r : in.rows) {
    step.push_back(double(r.step));
    loss.push_back(r.loss);
    gnorm.push_back(r.grad_norm);
    lr.push_back(r.lr);
    tps.push_back(r.tps);
  }
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + html_escape(in.title) +
                  " - titan.cpp report</title>\n<style>"
                  "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}"
                  "h1{font-size:20px;margin:0 0 4px}p.s{color:#555;margin:0 0 16px}"
                  ".charts{display:flex;flex-wrap:wrap;gap:12px}"
                  ".chart{border:1px solid #ddd;border-radius:4px;background:#fff}"
                  ".ct{font-size:13px;font-weight:600;fill:#222}.tick{font-size:10px;fill:#666}"
                  ".frame{fill:none;stroke:#bbb}.grid{stroke:#eee}.line{fill:none;stroke:#1f77b4;stroke-width:1.5}"
                  ".dot{fill:#1f77b4}pre{background:#f6f6f6;padding:12px;overflow:auto;font-size:12px}"
                  "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}"
                  "</style></head><body>\n";
  h += "<h1>" + html_escape(in.title) + "</h1>\n<p class=\"s\">" + html_escape(in.summary) + "</p>\n";
  h += "<div class=\"charts\">\n";
  h += svg_line_chart("loss", step, loss) + "\n";
  h += svg_line_chart("grad_norm", step, gnorm) + "\n";
  h += svg_line_chart("lr", step, lr) + "\n";
  h += svg_line_chart("tokens/s (this rank)", step, tps) + "\n";
  if (!in.validation.empty()) {
    std::vector<double> vs, vl;
    for (const auto& [s, l] : in.validation) {
      vs.push_back(double(s));
      vl.push_back(l);
    }
    h += svg_line_chart("validation loss", vs, vl) + "\n";
  }
  // The table keeps the page small on long runs: the last kTableRows steps (the curves have them all).
  constexpr std::size_t kTableRows = 30;
  const std::size_t skip = in.rows.size() > kTableRows ? in.rows.size() - kTableRows : 0;
  h += "</div>\n<h2>Steps</h2>\n";
  if (skip) h += "<p class=\"s\">The last " + std::to_string(kTableRows) + " of " + std::to_string(in.rows.size()) +
                 " steps (metrics.jsonl has the logged ones).</p>\n";
  h += "<table><tr><th>step</th><th>loss</th><th>grad_norm</th><th>lr</th><th>tokens/s</th></tr>\n";
  for (const auto& r : std::vector<ReportRow>(in.rows.begin() + std::ptrdiff_t(skip), in.rows.end()))
    h += "<tr><td>" + std::to_string(r.step) + "</td><td>" + num(r.loss) + "</td><td>" + num(r.grad_norm) + "</td><td>" +
         num(r.lr) + "</td><td>" + num(r.tps) + "</td></tr>\n";
  h += "</table>\n<h2>Plan</h2>\n<pre>" + html_escape(in.plan) + "</pre>\n</body></html>\n";
  return h;
}

}  // namespace titan::train
