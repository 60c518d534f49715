#include "broker/session_memory.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "broker/session.h"
#include "ipc/log.h"

namespace gpubroker::broker {

namespace {

using cuda::CUDA_ERROR_INVALID_VALUE;
using cuda::CUDA_ERROR_OUT_OF_MEMORY;
using cuda::CUDA_SUCCESS;
using CUresult = cuda::CUresult;

}  // namespace

std::uint64_t matrix_bytes(std::int64_t ld, std::int64_t rows, std::int64_t cols, std::uint64_t element) {
  if (rows <= 0 || cols <= 0) return 0;
  std::uint64_t elements = 0, bytes = 0;
  if (ld < 0 || __builtin_mul_overflow(static_cast<std::uint64_t>(ld), static_cast<std::uint64_t>(cols - 1), &elements) ||
      __builtin_add_overflow(elements, static_cast<std::uint64_t>(rows), &elements) ||
      __builtin_mul_overflow(elements, element, &bytes)) {
    return UINT64_MAX;
  }
  return bytes;
}

// A wrapped extent could pass the ownership check while the members between first and last lie
// elsewhere, hence the checked arithmetic.
std::uint64_t batch_bytes(std::int64_t stride, std::uint64_t one, std::uint64_t element, std::int64_t batch) {
  if (one == 0 || batch == 1) return one;  // one matrix: the stride is never used
  std::uint64_t step = 0, last = 0, total = 0;
  if (stride < 0 || batch < 1 || __builtin_mul_overflow(static_cast<std::uint64_t>(stride), element, &step) ||
      __builtin_mul_overflow(step, static_cast<std::uint64_t>(batch - 1), &last) ||
      __builtin_add_overflow(last, one, &total)) {
    return UINT64_MAX;
  }
  return total;
}

// Out of the session's hands now; the driver frees it on the context's release thread, once the
// context's work is done (cuMemFree waits for all of it), so that this session waits for nobody.
int SessionMemory::FreeDeviceMemory::operator()(cuda::CUdeviceptr pointer) const {
  session->uncount_device_bytes(device, bytes);
  session->memory_released();
  DeferredFrees& releases = session->context(device).releases();
  const DeferredFrees::Ticket released = releases.released_through();
  std::erase_if(*pending, [&](const PendingRelease& p) { return p.ticket <= released; });  // kept short
  pending->push_back({releases.free_later(pointer, bytes), bytes});
  return 0;
}

SessionMemory::SessionMemory(DeviceSession& session)
    : session_(session), pending_releases_(session.device_count()), staging_events_(session.device_count()) {}

bool SessionMemory::owns_allocation(std::uint64_t pointer, std::uint64_t bytes) const {
  return inside_one(allocations_, pointer, bytes);
}

std::uint64_t SessionMemory::serial_of(std::uint64_t pointer, std::uint64_t bytes) const {
  const Allocation* allocation = entry_holding(allocations_, pointer, bytes);
  return allocation != nullptr ? allocation->serial : 0;
}

std::optional<std::uint32_t> SessionMemory::device_of(std::uint64_t pointer) const {
  auto it = allocations_.upper_bound(pointer);
  if (it == allocations_.begin()) return std::nullopt;
  --it;
  if (pointer - it->first >= it->second.bytes) return std::nullopt;
  return it->second.device;
}

Outcome<wire::PointerResult> SessionMemory::allocate(CallContext&, const wire::MemAllocRequest& r) {
  if (r.device >= session_.device().devices().count) return CallError{cuda::CUDA_ERROR_INVALID_DEVICE};
  if (r.bytes == 0) return wire::PointerResult{0};
  if (!session_.may_allocate(r.device, r.bytes)) return CallError{CUDA_ERROR_OUT_OF_MEMORY};
  cuda::CUdeviceptr address = 0;  // on the device the allocation names, whichever is current
  const DeviceContext& context = session_.context(r.device);
  CUresult result = context.mem_alloc(&address, r.bytes);
  if (result == CUDA_ERROR_OUT_OF_MEMORY && context.releases().pending_bytes() > 0) {
    context.releases().wait_until_released();  // memory on its way back: worth the wait
    result = context.mem_alloc(&address, r.bytes);
  }
  if (result != CUDA_SUCCESS) return CallError{result};
  session_.count_device_bytes(r.device, r.bytes);
  allocations_.emplace(address, Allocation{r.bytes, r.device, session_.new_memory_serial(),
                                           Owned(address, FreeDeviceMemory{&session_, r.device, r.bytes, &pending_releases_[r.device]},
                                                 &session_.counters().allocations)});
  return wire::PointerResult{address};
}

// As cudaFree: answered once the session's own work on the device is done; the range is no longer
// the session's from this moment, and the driver frees it later (FreeDeviceMemory).
Outcome<wire::NoReply> SessionMemory::free(CallContext& call, const wire::HandleRequest& request) {
  if (request.handle == 0) return wire::NoReply{};  // cudaFree(nullptr)
  auto it = allocations_.find(request.handle);
  if (it == allocations_.end()) return CallError{CUDA_ERROR_INVALID_VALUE};  // not this session's
  const DeviceContext& context = session_.context(it->second.device);
  allocations_.erase(it);
  return session_.streams().synchronize_for_free(call, context);
}

Outcome<wire::MemInfoResult> SessionMemory::info(CallContext&, const wire::DeviceRequest& request) {
  if (request.device >= session_.device().devices().count) return CallError{cuda::CUDA_ERROR_INVALID_DEVICE};
  const DeviceContext& context = session_.context(request.device);
  std::size_t free = 0, total = 0;  // of the device asked about, whichever is current
  const CUresult r = context.mem_get_info(&free, &total);
  // What this session freed is free to it, as after a native cudaFree (which waited for the
  // release). Read after the driver's figure: a release done by then is in that figure.
  const DeferredFrees::Ticket released = context.releases().released_through();
  std::vector<PendingRelease>& pending = pending_releases_[request.device];
  std::erase_if(pending, [&](const PendingRelease& p) { return p.ticket <= released; });
  for (const PendingRelease& p : pending) free += p.bytes;
  free = std::min<std::size_t>(free, total);
  wire::MemInfoResult info{free, total};
  const std::uint64_t limit = session_.limits().device_memory_bytes;
  if (limit != 0 && limit < total) {
    // The session's view: its limit is its device (per device, as SessionLimits says).
    info.total = limit;
    info.free = std::min<std::uint64_t>(free, info.total - std::min(info.total, session_.device_bytes_on(request.device)));
  }
  return answer(r, info);
}

// Bytes, or 16- or 32-bit words (aligned, a whole number of them), in memory the session owns.
Outcome<wire::NoReply> SessionMemory::memset(CallContext& call, const wire::MemsetRequest& m) {
  const std::uint32_t element = m.element_bytes == 0 ? 1 : m.element_bytes;
  if (element != 1 && element != 2 && element != 4) return CallError{CUDA_ERROR_INVALID_VALUE};
  if (m.pointer % element != 0 || m.bytes % element != 0) return CallError{CUDA_ERROR_INVALID_VALUE};
  if (!session_.owns_range(m.pointer, m.bytes)) return CallError{CUDA_ERROR_INVALID_VALUE};
  auto stream = session_.streams().stream_for(m.stream);
  if (!stream) return stream.error();
  const auto [handle, context] = stream.value();
  const std::size_t count = m.bytes / element;
  auto work = session_.timeline().begin(call, stream.value(), m.stream);
  const CUresult r = element == 2   ? context->memset_d16_async(m.pointer, static_cast<unsigned short>(m.value), count, handle)
                     : element == 4 ? context->memset_d32_async(m.pointer, m.value, count, handle)
                                    : context->memset_d8_async(m.pointer, static_cast<unsigned char>(m.value), count, handle);
  work.finish(r, "memset", m.bytes);
  return answer(r);
}

Outcome<wire::NoReply> SessionMemory::copy_device(CallContext& call, const wire::CopyRequest& c) {
  if (!session_.owns_range(c.destination, c.bytes) || !session_.owns_range(c.source, c.bytes)) {
    return CallError{CUDA_ERROR_INVALID_VALUE};
  }
  auto stream = session_.streams().stream_for(c.stream);
  if (!stream) return stream.error();
  const auto [handle, context] = stream.value();
  // Unified addressing lets one copy name both ends; where they lie on two devices the copy is a
  // peer copy, with each end's own context, so that it needs no peer access between the contexts.
  const std::uint32_t to = session_.device_of(c.destination), from = session_.device_of(c.source);
  auto work = session_.timeline().begin(call, stream.value(), c.stream);
  const CUresult r = to == from ? context->memcpy_dtod_async(c.destination, c.source, c.bytes, handle)
                                : context->memcpy_peer_async(c.destination, session_.context(to).handle(), c.source,
                                                             session_.context(from).handle(), c.bytes, handle);
  work.finish(r, "memcpy DtoD", c.bytes);
  return answer(r);
}

Outcome<wire::NoReply> SessionMemory::copy_from_arena(CallContext& call, const wire::CopyRequest& c) {
  return copy_arena(call, c, true);
}

Outcome<wire::NoReply> SessionMemory::copy_to_arena(CallContext& call, const wire::CopyRequest& c) {
  return copy_arena(call, c, false);
}

// A direct transfer between the shared arena and the device: no CPU copy in any process. A
// synchronous one returns once the transfer is done.
Outcome<wire::NoReply> SessionMemory::copy_arena(CallContext& call, const wire::CopyRequest& copy, bool to_device) {
  const std::uint64_t device_pointer = to_device ? copy.destination : copy.source;
  const std::uint64_t arena_offset = to_device ? copy.source : copy.destination;
  auto host = call.session.arena_range(arena_offset, copy.bytes);
  if (!host || !session_.owns_range(device_pointer, copy.bytes)) return CallError{CUDA_ERROR_INVALID_VALUE};
  auto stream = session_.streams().stream_for(copy.stream);
  if (!stream) return stream.error();
  const auto [handle, context] = stream.value();
  auto work = session_.timeline().begin(call, stream.value(), copy.stream);
  const CUresult r = to_device ? context->memcpy_htod_async(device_pointer, host.value().data(), copy.bytes, handle)
                               : context->memcpy_dtoh_async(host.value().data(), device_pointer, copy.bytes, handle);
  work.finish(r, to_device ? "memcpy HtoD" : "memcpy DtoH", copy.bytes);
  if (r != CUDA_SUCCESS) return CallError{r};
  session_.counters().zero_copy_bytes.fetch_add(copy.bytes, std::memory_order_relaxed);
  (to_device ? session_.traffic().to_device : session_.traffic().from_device) += copy.bytes;
  if (!call.synchronous()) return wire::NoReply{};
  return session_.streams().complete_after(call, stream.value());
}

Outcome<wire::NoReply> SessionMemory::register_arena(CallContext& call, const wire::ArenaRange& range) {
  auto host = call.session.arena_range(range.offset, range.bytes);
  if (!host || range.bytes == 0) return CallError{CUDA_ERROR_INVALID_VALUE};
  if (arena_ranges_.contains(range.offset)) return CallError{cuda::CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED};
  // Portable: pinned for every context, so any context registers it.
  const DeviceContext& context = session_.current_context();
  if (CUresult r = context.mem_host_register(host.value().data(), range.bytes, cuda::CU_MEMHOSTREGISTER_PORTABLE);
      r != CUDA_SUCCESS) {
    return CallError{r};
  }
  arena_ranges_.emplace(range.offset, PinnedRange{range.bytes, Owned(static_cast<void*>(host.value().data()),
                                                                     UnregisterHost{&context},
                                                                     &session_.counters().arena_registrations)});
  pinned_bytes_ += range.bytes;
  return wire::NoReply{};
}

Outcome<wire::NoReply> SessionMemory::unregister_arena(CallContext&, const wire::ArenaRange& range) {
  auto it = arena_ranges_.find(range.offset);
  if (it == arena_ranges_.end()) return CallError{cuda::CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED};
  const int r = it->second.owner.reset();
  pinned_bytes_ -= it->second.bytes;
  arena_ranges_.erase(it);
  return answer(r);
}

void SessionMemory::pin_staging(ipc::ServerSession& session) {
  if (staging_tried_) return;
  staging_tried_ = true;
  // At the first pageable copy rather than the session's first call: pinning the pipes takes
  // milliseconds on a GPU, and a discovery pass never copies. Unpinned, copies still work (the
  // driver stages them itself), only slower.
  auto staging = session.staging_memory();
  const auto start = std::chrono::steady_clock::now();
  // Portable: pinned for every device's context, as the copies of any device go through the pipes.
  const DeviceContext& context = session_.current_context();
  if (context.mem_host_register(staging.data(), staging.size(), cuda::CU_MEMHOSTREGISTER_PORTABLE) == CUDA_SUCCESS) {
    staging_pin_.emplace(static_cast<void*>(staging.data()), UnregisterHost{&context}, nullptr);
  }
  ipc::log(ipc::LogLevel::kDebug, "staging pipes ({} bytes) {} in {} us", staging.size(),
           staging_pin_ ? "pinned" : "not pinned",
           std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count());
}

Outcome<wire::NoReply> SessionMemory::copy_from_staging(CallContext& call, const wire::CopyRequest& c) {
  return copy_staged(call, c, true);
}

Outcome<wire::NoReply> SessionMemory::copy_to_staging(CallContext& call, const wire::CopyRequest& c) {
  return copy_staged(call, c, false);
}

Outcome<wire::NoReply> SessionMemory::copy_staged(CallContext& call, const wire::CopyRequest& copy, bool to_device) {
  const std::uint64_t pointer = to_device ? copy.destination : copy.source;
  int refusal = 0;
  if (copy.bytes != call.header().staged_bytes || !session_.owns_range(pointer, copy.bytes)) {
    refusal = CUDA_ERROR_INVALID_VALUE;
  }
  return transfer_staged(call, StagedTransfer{pointer, std::max<std::uint64_t>(copy.bytes, 1),
                                              std::max<std::uint64_t>(copy.bytes, 1), copy.stream, to_device, 0, refusal});
}

// Each chunk is one or more asynchronous transfers between the pipe and the device, marked by an
// event; a chunk goes back to the pipe once its event has passed, with up to kStagingWindow in
// flight.
Outcome<wire::NoReply> SessionMemory::transfer_staged(CallContext& call, const StagedTransfer& t) {
  const wire::RequestHeader& h = call.header();
  int status = t.refusal;
  auto fail = [&](CUresult r) {
    if (r != CUDA_SUCCESS && status == 0) status = t.failure_status != 0 ? t.failure_status : static_cast<int>(r);
  };
  // The transfers and their events run in the stream's context.
  cuda::CUstream stream = nullptr;
  const DeviceContext* context = &session_.current_context();
  std::optional<SessionTimeline::Work> work;  // the whole transfer, timed as one piece of work
  if (status == 0) {
    auto found = session_.streams().stream_for(t.stream);
    if (found) {
      stream = found.value().handle;
      context = found.value().context;
      work.emplace(session_.timeline().begin(call, found.value(), t.stream));
    } else {
      status = t.failure_status != 0 ? t.failure_status : found.error().status;
    }
  }
  if (status == 0) pin_staging(call.session);
  std::vector<OwnedEvent>& events = staging_events_[context->ordinal()];
  while (status == 0 && events.size() <= kStagingWindow) {
    cuda::CUevent event = nullptr;
    const CUresult r = context->event_create(&event, cuda::CU_EVENT_DISABLE_TIMING);
    fail(r);
    if (r == CUDA_SUCCESS) events.emplace_back(event, DestroyEvent{context}, nullptr);
  }
  auto event_of = [&](std::uint64_t index) { return events[index % events.size()].get(); };
  // A chunk goes back to the pipe only once the device is done with it, even after a failure: the
  // transfers queued before it may still read or write it. Chunks never queued have no event.
  std::uint64_t recorded = 0;  // chunks [0, recorded) had their event recorded
  auto settle = [&](std::uint64_t index) {
    if (index < recorded) fail(context->event_synchronize(event_of(index)));
  };
  // The device address of byte `offset` of the packed data, and how many bytes follow it there.
  auto place = [&](std::uint64_t offset) {
    const std::uint64_t run = offset / t.run_bytes, within = offset % t.run_bytes;
    return std::pair{t.pointer + run * t.pitch + within, t.run_bytes - within};
  };
  auto each_run = [&](std::span<std::byte> piece, std::uint64_t offset, auto&& copy) {
    for (std::uint64_t at = 0; at < piece.size() && status == 0;) {
      const auto [device, room] = place(offset + at);
      const std::uint64_t n = std::min<std::uint64_t>(room, piece.size() - at);
      fail(copy(device, piece.data() + at, n));
      at += n;
    }
  };
  std::uint64_t done = 0;
  bool completed = false;
  ipc::Result<void> moved = boost::outcome_v2::success();
  if (t.to_device) {
    moved = call.session.receive_staged_windowed(h.staged_bytes, kStagingWindow,
        [&](std::span<const std::byte> piece, std::uint64_t index) {
          auto bytes = std::span(const_cast<std::byte*>(piece.data()), piece.size());
          each_run(bytes, done, [&](std::uint64_t device, std::byte* host, std::uint64_t n) {
            return context->memcpy_htod_async(device, host, n, stream);
          });
          if (status == 0) {
            fail(context->event_record(event_of(index), stream));
            if (status == 0) recorded = index + 1;
          }
          done += piece.size();
          // As CUDA's copy from pageable memory does, the call returns once the last bytes are
          // staged and queued, not transferred: the pipe keeps them until their event passes, and
          // a later failure surfaces at the next synchronizing call.
          if (done == h.staged_bytes && status == 0) {
            call.session.complete(h, session_.take_pending_error());
            completed = true;
          }
        },
        settle);
  } else {
    moved = call.session.send_staged_windowed(h.staged_bytes, kStagingWindow,
        [&](std::span<std::byte> piece, std::uint64_t index) {
          each_run(piece, done, [&](std::uint64_t device, std::byte* host, std::uint64_t n) {
            return context->memcpy_dtoh_async(host, device, n, stream);
          });
          if (status == 0) {
            fail(context->event_record(event_of(index), stream));
            if (status == 0) recorded = index + 1;
          }
          if (status != 0) std::memset(piece.data(), 0, piece.size());
          done += piece.size();
        },
        settle);
  }
  if (work) {
    work->finish(status == 0 && moved ? CUDA_SUCCESS : cuda::CUDA_ERROR_UNKNOWN, t.to_device ? "memcpy HtoD" : "memcpy DtoH",
                 h.staged_bytes);
  }
  if (!moved) return pipe_violation(moved.error());
  session_.counters().staged_bytes.fetch_add(h.staged_bytes, std::memory_order_relaxed);
  (t.to_device ? session_.traffic().to_device : session_.traffic().from_device) += status == 0 ? h.staged_bytes : 0;
  if (completed) {
    // Answered already; a failure after that surfaces at the next synchronizing call.
    if (status != 0) session_.fail_later(call.session, status);
    return kCompletesLater;
  }
  session_.finish_request(call.session, h, status);
  return kCompletesLater;
}

}  // namespace gpubroker::broker
