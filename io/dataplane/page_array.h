#pragma once
// A fixed array of T in its own anonymous mapping: zero until written, and
// resident only in the pages that have been. For a worker's per-buffer
// tables whose far end only heavy or unusual traffic reaches (the TSO split
// headers, the per-segment sends of the GSO-off path): a std::vector would
// zero, and so fault in, all of it at start.

#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <string>
#include <system_error>
#include <type_traits>

namespace udpring::io {

template <class T>
class PageArray {
  // All-zero bytes must be a valid T, and T needs no destructor.
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>);

 public:
  PageArray() = default;
  explicit PageArray(size_t n) : size_(n) {
    if (n == 0) return;
    void* p = mmap(nullptr, bytes(), PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (p == MAP_FAILED) {
      throw std::system_error(errno, std::generic_category(), "mmap " + std::to_string(bytes()) + " bytes");
    }
    data_ = static_cast<T*>(p);
  }
  ~PageArray() {
    if (data_) munmap(data_, bytes());
  }
  PageArray(PageArray&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  PageArray& operator=(PageArray&& o) noexcept {
    if (this != &o) {
      this->~PageArray();
      data_ = o.data_;
      size_ = o.size_;
      o.data_ = nullptr;
      o.size_ = 0;
    }
    return *this;
  }
  PageArray(const PageArray&) = delete;
  PageArray& operator=(const PageArray&) = delete;

  T* data() noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  T& operator[](size_t i) noexcept { return data_[i]; }

 private:
  size_t bytes() const noexcept { return size_ * sizeof(T); }
  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace udpring::io
