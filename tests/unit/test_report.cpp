// The end-of-run report (train/report.hpp) and the terminal progress line (train/metrics.hpp):
// chart coordinates follow the data, non-finite points drop out, text is escaped, the progress
// line's rate and ETA count only this run's steps. Also the tracer's device spans (core/trace.hpp)
// with a fake device timer, the part of GPU profiling a CPU can check.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>
#include <string>

#include "core/trace.hpp"
#include "train/metrics.hpp"
#include "train/report.hpp"

using namespace titan::train;

namespace {
int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (auto at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}
}  // namespace

TEST_CASE("progress_line shows the bar, the rate and the ETA") {
  CHECK(progress_line(50, 1, 100, 10.0, 5.2314, 20) ==
        "[##########----------] 50/100   50%  loss 5.2314  5.0 steps/s  ETA 0:00:10");
  // Resumed at step 51: 10 steps in 20 s is 2 s/step, 40 steps left.
  CHECK(progress_line(60, 51, 100, 20.0, 1.0, 10) == "[######----] 60/100   60%  loss 1.0000  2.0 s/step  ETA 0:01:20");
  CHECK(progress_line(100, 1, 100, 50.0, 0.5, 4) == "[####] 100/100  100%  loss 0.5000  2.0 steps/s  ETA 0:00:00");
}

TEST_CASE("svg_line_chart maps the data range onto the plot area") {
  // Plot area: x from 64 to 444, y from 28 (max) to 204 (min).
  const std::string svg = svg_line_chart("loss", {1, 2, 3}, {3, 1, 2});
  CHECK(count(svg, "<svg") == 1);
  CHECK(svg.find("points=\"64.0,28.0 254.0,204.0 444.0,116.0\"") != std::string::npos);
  CHECK(svg.find(">step 1</text>") != std::string::npos);
  CHECK(svg.find(">step 3</text>") != std::string::npos);
  // A NaN point is left out; the rest keep their places.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(svg_line_chart("x", {1, 2, 3}, {3, nan, 1}).find("points=\"64.0,28.0 444.0,204.0\"") != std::string::npos);
  CHECK(svg_line_chart("empty", {}, {}).find("no data") != std::string::npos);
  // A flat series still draws inside the frame.
  CHECK(svg_line_chart("flat", {1, 2}, {5, 5}).find("points=\"64.0,116.0 444.0,116.0\"") != std::string::npos);
}

TEST_CASE("render_report holds one chart per series, the escaped plan and the steps") {
  ReportInput in;
  in.title = "my <run>";
  in.summary = "steps 1-3";
  in.plan = "mesh <1 x 2> & more";
  in.rows = {{1, 7.5, 2.0, 1e-4, 1000}, {2, 7.0, 1.5, 2e-4, 1100}, {3, 6.5, 1.2, 3e-4, 1200}};
  std::string html = render_report(in);
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(count(html, "<svg") == 4);
  CHECK(html.find("mesh &lt;1 x 2&gt; &amp; more") != std::string::npos);
  CHECK(html.find("<title>my &lt;run&gt; - titan.cpp report</title>") != std::string::npos);
  CHECK(count(html, "<tr><td>") == 3);
  CHECK(html.find("http://") == html.find("http://www.w3.org/2000/svg"));  // nothing fetched: only the SVG namespace
  in.validation = {{2, 6.9}};
  CHECK(count(render_report(in), "<svg") == 5);
}

TEST_CASE("svg_line_chart thins a long series but keeps its extremes") {
  std::vector<double> xs, ys;
  for (int i = 1; i <= 100000; ++i) {
    xs.push_back(i);
    ys.push_back(i == 77777 ? 50.0 : 1.0 + (i % 7) * 0.01);
  }
  const std::string svg = svg_line_chart("loss", xs, ys);
  const auto at = svg.find("points=\"");
  REQUIRE(at != std::string::npos);
  const std::string pts = svg.substr(at, svg.find('"', at + 8) - at);
  CHECK(count(pts, ",") <= 2000);
  CHECK(pts.find(",28.0") != std::string::npos);  // the spike still reaches the top of the plot
}

TEST_CASE("trace: with a device timer every span gets a device twin on the device thread, on the device's clock") {
  using namespace titan;
  // A fake device: marker k was recorded at device time 100 * k us; every marker is released.
  std::uint64_t next = 1;
  std::vector<std::uint64_t> released;
  trace::set_device_timer({[&] { return next++; },
                           [](std::uint64_t a, std::uint64_t b) { return 100.0 * (double(b) - double(a)); },
                           [&](std::uint64_t m) { released.push_back(m); }});
  // Marker 1 is the reference, taken at host time ref_us.
  const double ref_us = trace::now_us();
  trace::take();
  trace::set_enabled(true);
  {
    trace::Span outer("module", "outer");  // markers 2 .. 5
    { trace::Span inner("gemm", "inner"); }  // markers 3, 4
  }
  trace::set_enabled(false);
  std::vector<trace::Event> events = trace::take();
  trace::set_device_timer({});
  std::vector<trace::Event> device;
  for (auto& e : events)
    if (e.tid == trace::kDeviceTid) device.push_back(e);
  REQUIRE(events.size() == 4);  // two host spans, two device twins
  REQUIRE(device.size() == 2);
  // In recording order: inner ended first.
  CHECK(device[0].name == "inner");
  CHECK(device[0].dur_us == 100.0);  // markers 3 -> 4
  CHECK(device[0].ts_us == Approx(ref_us + 200.0).margin(50.0));  // marker 3 is 2 markers after the reference
  CHECK(device[1].name == "outer");
  CHECK(device[1].dur_us == 300.0);  // markers 2 -> 5
  CHECK(std::string(device[1].category) == "module");
  // Every span marker and the reference go back to the device.
  std::sort(released.begin(), released.end());
  CHECK(released == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
}
