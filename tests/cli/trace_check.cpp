// trace_check: validates one Chrome trace-event file written by profiling.enable_profiling
// (src/train/profiler.cpp), for tests/cli/check_profiling.sh. No Python needed.
//
// usage: trace_check FILE --rank R --steps 2,3 --micro-batches N --require cat1,cat2,...
// Checks: the file is JSON with a traceEvents array; every complete ("X") event has a name, a
// category, ts >= 0, dur >= 0, pid = R and an integer tid, and lies inside one of the train_step
// events; the train_step events are exactly --steps (args.step), as is otherData.recorded_steps;
// spans of one thread nest (none starts inside another and ends after it); every recorded step
// has N forward and N backward spans and one root module span per forward
// ("Transformer"); every --require category occurs. Prints the events per category.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

int g_failures = 0;
void fail(const std::string& what) {
  std::printf("FAIL: %s\n", what.c_str());
  ++g_failures;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: trace_check FILE --rank R --steps A,B --micro-batches N --require c1,c2\n");
    return 2;
  }
  const std::string path = argv[1];
  long long rank = 0, micro = 1;
  std::vector<long long> steps;
  std::vector<std::string> required;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--rank") rank = std::stoll(value);
    else if (flag == "--micro-batches") micro = std::stoll(value);
    else if (flag == "--steps") for (const auto& s : split(value)) steps.push_back(std::stoll(s));
    else if (flag == "--require") required = split(value);
    else {
      std::fprintf(stderr, "trace_check: unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::printf("FAIL: cannot read %s\n", path.c_str());
    return 1;
  }
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    std::printf("FAIL: %s is not valid JSON: %s\n", path.c_str(), e.what());
    return 1;
  }
  if (!j.is_object() || !j.contains("traceEvents") || !j["traceEvents"].is_array()) {
    std::printf("FAIL: %s has no traceEvents array\n", path.c_str());
    return 1;
  }
  std::vector<long long> listed;
  if (j.contains("otherData") && j["otherData"].contains("recorded_steps"))
    for (const auto& s : j["otherData"]["recorded_steps"]) listed.push_back(s.get<long long>());
  if (listed != steps) fail("otherData.recorded_steps does not list the expected steps");

  struct Span {
    double ts, end;
  };
  std::map<long long, Span> step_spans;
  std::map<std::string, int> per_category;
  std::vector<std::pair<double, double>> spans;  // every X event's [ts, ts + dur]
  std::vector<std::string> names;
  std::vector<std::string> cats;
  std::vector<long long> tids;
  for (const auto& e : j["traceEvents"]) {
    if (!e.is_object() || !e.contains("ph") || !e["ph"].is_string()) {
      fail("an event without a ph string");
      continue;
    }
    if (e["ph"] == "M") continue;
    if (e["ph"] != "X") {
      fail("unexpected event phase " + e["ph"].dump());
      continue;
    }
    const bool shaped = e.contains("name") && e["name"].is_string() && e.contains("cat") && e["cat"].is_string() &&
                        e.contains("ts") && e["ts"].is_number() && e.contains("dur") && e["dur"].is_number() &&
                        e.contains("pid") && e["pid"].is_number_integer() && e.contains("tid") &&
                        e["tid"].is_number_integer();
    if (!shaped) {
      fail("malformed complete event " + e.dump());
      continue;
    }
    const double ts = e["ts"].get<double>(), dur = e["dur"].get<double>();
    if (ts < 0 || dur < 0) fail("negative ts or dur in " + e.dump());
    if (e["pid"].get<long long>() != rank) fail("pid is not the rank in " + e.dump());
    const std::string cat = e["cat"], name = e["name"];
    ++per_category[cat];
    if (name == "train_step") {
      if (!e.contains("args") || !e["args"].contains("step")) fail("train_step without args.step");
      else {
        const long long s = e["args"]["step"].get<long long>();
        if (step_spans.count(s)) fail("step " + std::to_string(s) + " recorded twice");
        step_spans[s] = {ts, ts + dur};
      }
    }
    spans.emplace_back(ts, ts + dur);
    names.push_back(name);
    cats.push_back(cat);
    tids.push_back(e["tid"].get<long long>());
  }
  // Spans of one thread nest: each starts after the previous one ended or ends inside it (what
  // Perfetto needs to stack them; 0.01 us of slack for the printed rounding).
  {
    std::vector<size_t> order(spans.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      if (tids[a] != tids[b]) return tids[a] < tids[b];
      if (spans[a].first != spans[b].first) return spans[a].first < spans[b].first;
      return spans[a].second > spans[b].second;
    });
    std::vector<size_t> open;
    for (size_t k = 0; k < order.size(); ++k) {
      const size_t i = order[k];
      if (k > 0 && tids[order[k - 1]] != tids[i]) open.clear();
      while (!open.empty() && spans[open.back()].second <= spans[i].first + 0.01) open.pop_back();
      if (!open.empty() && spans[i].second > spans[open.back()].second + 0.01)
        fail("event '" + names[i] + "' (" + cats[i] + ") starts inside '" + names[open.back()] + "' (" +
             cats[open.back()] + ") but ends after it");
      open.push_back(i);
    }
  }
  std::vector<long long> got;
  for (const auto& [s, span] : step_spans) got.push_back(s);
  if (got != steps) {
    std::string g, w;
    for (auto s : got) g += std::to_string(s) + " ";
    for (auto s : steps) w += std::to_string(s) + " ";
    fail("train_step events are for steps [ " + g + "], expected [ " + w + "]");
  }
  // Every span lies inside a recorded step (0.01 us of slack for the printed rounding), and each
  // step holds its forward, backward and root module spans.
  std::map<long long, std::map<std::string, int>> in_step;
  for (size_t i = 0; i < spans.size(); ++i) {
    long long owner = -1;
    for (const auto& [s, span] : step_spans)
      if (spans[i].first >= span.ts - 0.01 && spans[i].second <= span.end + 0.01) owner = s;
    if (owner < 0) {
      fail("event '" + names[i] + "' (" + cats[i] + ") lies outside every recorded step");
      continue;
    }
    ++in_step[owner][cats[i]];
    if (cats[i] == "module" && names[i] == "Transformer") ++in_step[owner]["root module"];
  }
  for (auto s : steps)
    for (const char* what : {"forward", "backward", "root module"})
      if (in_step[s][what] != micro)
        fail("step " + std::to_string(s) + " has " + std::to_string(in_step[s][what]) + " " + what + " spans, expected " +
             std::to_string(micro));
  for (const auto& c : required)
    if (!per_category.count(c)) fail("no event of category '" + c + "'");
  std::printf("%s:", path.c_str());
  for (const auto& [c, n] : per_category) std::printf(" %s=%d", c.c_str(), n);
  std::printf("\n");
  return g_failures ? 1 : 0;
}
