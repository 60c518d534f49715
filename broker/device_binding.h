// Which device's context is current on a session's dispatcher thread. A session's calls name
// their device (the request header's device, the device a stream or handle was made on); the
// binding makes that device's primary context current only when it differs from the one already
// current, so a session that stays on one device binds once.
//
// One per session, used by its dispatcher thread, and by the thread that destroys the session
// after forget() (a thread whose current context is unknown).
#pragma once

#include <cstdint>

#include "broker/device_layer.h"

namespace gpubroker::broker {

class DeviceBinding {
 public:
  explicit DeviceBinding(const DeviceLayer& layer) : layer_(layer) {}

  void bind(std::uint32_t device) {
    if (device == bound_) return;
    layer_.bind_thread(device);
    bound_ = device;
  }
  // The device whose context is current, or kNone before the first bind().
  [[nodiscard]] std::uint32_t bound() const { return bound_; }
  [[nodiscard]] bool used() const { return used_ || bound_ != kNone; }
  // The next bind() binds whatever was bound before: the calling thread is another one.
  void forget() {
    used_ = used_ || bound_ != kNone;
    bound_ = kNone;
  }

  static constexpr std::uint32_t kNone = ~0u;

 private:
  const DeviceLayer& layer_;
  std::uint32_t bound_ = kNone;
  bool used_ = false;
};

}  // namespace gpubroker::broker
