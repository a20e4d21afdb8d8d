#include "net/upstream_pool.h"

#include <sys/socket.h>

#include <cerrno>

namespace retake::net {

bool idle_socket_alive(boost::asio::ip::tcp::socket& socket) noexcept {
  if (!socket.is_open()) return false;
  char byte;
  ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  // 0: the peer closed; > 0: bytes nobody asked for (the connection is out of sync).
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

std::unique_ptr<UpstreamConnection> UpstreamPool::take(const std::string& key) {
  std::vector<std::unique_ptr<UpstreamConnection>> dead;  // closed outside the lock
  std::unique_ptr<UpstreamConnection> found;
  {
    std::lock_guard lock(mutex_);
    auto it = idle_.find(key);
    if (it == idle_.end()) return nullptr;
    auto now = std::chrono::steady_clock::now();
    List& list = it->second;
    while (!list.empty()) {
      auto conn = std::move(list.back());
      list.pop_back();
      --total_;
      if (now - conn->idle_since < idle_timeout_ && idle_socket_alive(conn->socket)) {
        found = std::move(conn);
        break;
      }
      dead.push_back(std::move(conn));
    }
  }
  for (auto& d : dead) {
    boost::system::error_code ec;
    d->socket.close(ec);
  }
  return found;
}

bool UpstreamPool::has_idle(const std::string& key) const {
  std::lock_guard lock(mutex_);
  auto it = idle_.find(key);
  return it != idle_.end() && !it->second.empty();
}

void UpstreamPool::give(std::unique_ptr<UpstreamConnection> conn) {
  if (!conn) return;
  conn->idle_since = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mutex_);
    if (!closed_ && total_ < max_total_) {
      List& list = idle_[conn->key];
      if (list.size() < per_upstream_) {
        list.push_back(std::move(conn));
        ++total_;
        return;
      }
    }
  }
  boost::system::error_code ec;
  conn->socket.close(ec);
}

size_t UpstreamPool::sweep() {
  List dead;
  {
    std::lock_guard lock(mutex_);
    auto now = std::chrono::steady_clock::now();
    for (auto it = idle_.begin(); it != idle_.end();) {
      List& list = it->second;
      for (auto& c : list)
        if (now - c->idle_since >= idle_timeout_) dead.push_back(std::move(c));
      std::erase(list, nullptr);
      if (list.empty()) {
        it = idle_.erase(it);
      } else {
        ++it;
      }
    }
    total_ -= dead.size();
  }
  for (auto& d : dead) {
    boost::system::error_code ec;
    d->socket.close(ec);
  }
  return dead.size();
}

void UpstreamPool::close() {
  std::unordered_map<std::string, List> all;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    all.swap(idle_);
    total_ = 0;
  }
  for (auto& [key, list] : all)
    for (auto& c : list) {
      boost::system::error_code ec;
      c->socket.close(ec);
    }
}

size_t UpstreamPool::idle_count() const {
  std::lock_guard lock(mutex_);
  return total_;
}

}  // namespace retake::net
