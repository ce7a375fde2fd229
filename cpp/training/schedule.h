// Learning-rate schedules. inverse_sqrt is the paper's (section 5.3):
//   lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)
// and, with a peak lr given, the same shape scaled so that its peak (at step = warmup) is lr.
// cosine: linear warmup to lr, then half a cosine down to 0 at total_steps. constant: lr.
#pragma once

#include <cstdint>
#include <string>

namespace tformer::training {

enum class Schedule { inverse_sqrt, cosine, constant };

struct ScheduleOptions {
  Schedule kind = Schedule::inverse_sqrt;
  double peak_lr = 0.0;  // <= 0 with inverse_sqrt: the paper's formula
  int64_t warmup_steps = 4000;
  int64_t total_steps = 0;  // cosine only
  int64_t d_model = 512;
};

Schedule parse_schedule(const std::string& name);
void validate(const ScheduleOptions& o);     // std::invalid_argument naming the bad field
double learning_rate(const ScheduleOptions& o, int64_t step);  // step is 1-based

}  // namespace tformer::training
