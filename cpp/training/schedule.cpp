#include "tformer/training.h"

#include <algorithm>
#include <cmath>

#include "tformer/errors.h"

namespace tformer::training {

Schedule parse_schedule(const std::string& name) {
  if (name == "inverse_sqrt") return Schedule::inverse_sqrt;
  if (name == "cosine") return Schedule::cosine;
  if (name == "constant") return Schedule::constant;
  throw_value_error("unknown schedule '", name, "': expected 'inverse_sqrt', 'cosine' or 'constant'");
}

void validate(const ScheduleOptions& o) {
  if (o.warmup_steps < 0) throw_value_error("warmup_steps must be >= 0, got ", o.warmup_steps);
  if (o.kind == Schedule::inverse_sqrt && o.warmup_steps < 1)
    throw_value_error("warmup_steps must be >= 1 with schedule 'inverse_sqrt', got ", o.warmup_steps);
  if (o.kind != Schedule::inverse_sqrt && !(o.peak_lr > 0.0))
    throw_value_error("lr must be a number > 0 with this schedule, got ", o.peak_lr);
  if (o.kind == Schedule::cosine && o.total_steps <= o.warmup_steps)
    throw_value_error("total_steps (", o.total_steps, ") must be larger than warmup_steps (", o.warmup_steps,
                      ") with schedule 'cosine'");
  if (o.d_model < 1) throw_value_error("d_model must be >= 1");
}

double learning_rate(const ScheduleOptions& o, int64_t step) {
  const double s = static_cast<double>(std::max<int64_t>(step, 1));
  const double w = static_cast<double>(o.warmup_steps);
  switch (o.kind) {
    case Schedule::inverse_sqrt: {
      const double shape = std::min(1.0 / std::sqrt(s), s * std::pow(w, -1.5));
      if (o.peak_lr > 0.0) return o.peak_lr * std::sqrt(w) * shape;  // peak (s = w) is peak_lr
      return shape / std::sqrt(static_cast<double>(o.d_model));
    }
    case Schedule::cosine: {
      if (s <= w) return o.peak_lr * s / std::max(w, 1.0);
      const double progress = std::min(1.0, (s - w) / static_cast<double>(o.total_steps - o.warmup_steps));
      return o.peak_lr * 0.5 * (1.0 + std::cos(M_PI * progress));
    }
    case Schedule::constant:
      return o.peak_lr;
  }
  return 0.0;
}

}  // namespace tformer::training
