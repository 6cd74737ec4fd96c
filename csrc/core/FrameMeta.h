// FrameMeta: what the producer's side knows of a frame; a slot carries it and its packet inherits it.
#pragma once

#include <cstdint>

namespace reactor {

struct FrameMeta {
  int64_t frame_index = 0;
  int64_t width = 0;
  int64_t height = 0;
  int64_t pts_ns = 0;
  int64_t t_acquire_ns = 0;
  int64_t t_commit_ns = 0;
};

}  // namespace reactor
