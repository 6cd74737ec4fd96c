// PacketQueue: FIFO order, pool bound, eventfd, close semantics.
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>

#include "core/Error.h"
#include "core/PacketQueue.h"

using namespace reactor;

TEST(PacketQueue, FifoOrderAndPoolBound) {
  auto queue = std::make_shared<PacketQueue>(3, 128);
  std::atomic<bool> cancel{false};
  int buffers[3];
  for (int i = 0; i < 3; ++i) {
    buffers[i] = queue->acquire_buffer(cancel);
    ASSERT_GE(buffers[i], 0);
    queue->meta(buffers[i]).frame_index = i;
    queue->publish(buffers[i]);
  }
  EXPECT_EQ(queue->size(), 3);
  for (int i = 0; i < 3; ++i) {
    const int popped = queue->pop(0);
    ASSERT_GE(popped, 0);
    EXPECT_EQ(queue->meta(popped).frame_index, i);
    queue->release(popped);
  }
  EXPECT_EQ(queue->pop(1000), -1);  // timeout
}

TEST(PacketQueue, EventFdBecomesReadableOnPublish) {
  auto queue = std::make_shared<PacketQueue>(2, 16);
  std::atomic<bool> cancel{false};
  pollfd fd{queue->event_fd(), POLLIN, 0};
  EXPECT_EQ(poll(&fd, 1, 0), 0);
  queue->publish(queue->acquire_buffer(cancel));
  EXPECT_EQ(poll(&fd, 1, 0), 1);
  queue->clear_event();
  fd.revents = 0;
  EXPECT_EQ(poll(&fd, 1, 0), 0);
}

TEST(PacketQueue, ClosedQueueDrainsThenThrows) {
  auto queue = std::make_shared<PacketQueue>(2, 16);
  std::atomic<bool> cancel{false};
  queue->publish(queue->acquire_buffer(cancel));
  queue->close();
  EXPECT_GE(queue->try_pop(), 0);
  EXPECT_THROW(queue->try_pop(), Closed);
  EXPECT_THROW(queue->pop(-1), Closed);
  EXPECT_EQ(queue->acquire_buffer(cancel), -1);
}

TEST(PacketQueue, RefusesBadSizes) {
  EXPECT_THROW(PacketQueue(0, 16), InvalidArgument);
  EXPECT_THROW(PacketQueue(4, 0), InvalidArgument);
  EXPECT_THROW(PacketQueue(-1, 16), InvalidArgument);
}

TEST(PacketRef, ReturnsBufferToPoolOnDestruction) {
  auto queue = std::make_shared<PacketQueue>(1, 16);
  std::atomic<bool> cancel{false};
  queue->publish(queue->acquire_buffer(cancel));
  {
    PacketRef ref(queue, queue->pop(0));
    EXPECT_FALSE(ref.released());
  }
  EXPECT_GE(queue->acquire_buffer(cancel), 0);  // would wait forever if the buffer had leaked
}
