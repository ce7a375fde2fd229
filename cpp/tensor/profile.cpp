#include "tformer/profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

namespace tformer::profile {
namespace {

struct Entry {
  double seconds = 0.0;
  long calls = 0;
};

std::mutex& mutex() {
  static std::mutex m;
  return m;
}

std::map<std::string, Entry>& table() {
  static auto* t = new std::map<std::string, Entry>();
  return *t;
}

}  // namespace

bool enabled() {
  static const bool on = [] {
    const char* v = std::getenv("TFORMER_PROFILE");
    return v && *v && *v != '0';
  }();
  return on;
}

void record(const char* op, double seconds) {
  std::lock_guard<std::mutex> lock(mutex());
  Entry& e = table()[op];
  e.seconds += seconds;
  e.calls += 1;
}

std::string report() {
  std::lock_guard<std::mutex> lock(mutex());
  std::vector<std::pair<std::string, Entry>> rows(table().begin(), table().end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  double total = 0.0;
  for (auto& r : rows) total += r.second.seconds;
  std::string out;
  char line[256];
  for (auto& r : rows) {
    std::snprintf(line, sizeof(line), "%-28s %10.1f ms %8ld calls %6.1f%%\n", r.first.c_str(), r.second.seconds * 1e3,
                  r.second.calls, total > 0 ? 100.0 * r.second.seconds / total : 0.0);
    out += line;
  }
  return out;
}

void reset() {
  std::lock_guard<std::mutex> lock(mutex());
  table().clear();
}

}  // namespace tformer::profile
