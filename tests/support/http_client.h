#pragma once
// Raw HTTP clients for the health server's tests: connections from a chosen
// loopback address (127.0.0.0/8 is all local, so each address is a separate
// "host" to a per-address cap), requests sent whole or not at all, and
// answers timed.

#include <cstdint>
#include <string>

#include "core/unique_fd.h"

namespace udpring::test {

/// A TCP connection from src_ip to 127.0.0.1:port in the calling thread's
/// namespace, within 2 s; throws std::runtime_error naming the step that
/// failed.
core::UniqueFd http_connect(const std::string& src_ip, uint16_t port);

/// Sends `request` on `fd` and reads until the server closes, at most
/// `timeout_ms` in all; returns what arrived ("" if nothing did).
std::string http_exchange(int fd, const std::string& request, int timeout_ms = 2000);

/// Waits up to `timeout_ms` for the server to close `fd` (end of stream or
/// reset); true if it did. Whatever the server sends first is discarded.
bool closed_by_server(int fd, int timeout_ms);

/// The status code at the start of an HTTP response, 0 if there is none.
int http_status(const std::string& response);

}  // namespace udpring::test
