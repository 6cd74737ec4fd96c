// ThreadPolicy: parsing, names, and pthread_setschedparam.
#include "core/ThreadPolicy.h"

#include <sched.h>

#include "core/Error.h"

namespace reactor {

ThreadPolicy parse_thread_policy(const std::string& name) {
  if (name == "batch") return ThreadPolicy::Batch;
  if (name == "normal") return ThreadPolicy::Normal;
  RE_THROW(InvalidArgument, "unknown encoder thread scheduling '", name, "'; expected 'batch' or 'normal'");
}

const char* thread_policy_name(ThreadPolicy policy) { return policy == ThreadPolicy::Batch ? "batch" : "normal"; }

int apply_thread_policy(pthread_t thread, ThreadPolicy policy) noexcept {
  const sched_param param{};  // priority 0: the only one SCHED_OTHER and SCHED_BATCH take
  return pthread_setschedparam(thread, policy == ThreadPolicy::Batch ? SCHED_BATCH : SCHED_OTHER, &param);
}

}  // namespace reactor
