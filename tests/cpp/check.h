// CHECK(cond, fmt, ...) for the host-only C++ tests: prints the file, line, condition and a
// formatted message, then exits 1 (independent of NDEBUG).
#pragma once

#include <cstdio>
#include <cstdlib>

#define CHECK(cond, ...)                                          \
  do {                                                            \
    if (!(cond)) {                                                \
      std::printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                                   \
      std::printf("\n");                                          \
      std::exit(1);                                               \
    }                                                             \
  } while (0)
