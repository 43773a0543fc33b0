#ifndef VIETNAMESE_AI_CZLIB_H
#define VIETNAMESE_AI_CZLIB_H

// The system zlib, exposed to Swift. zlib's init functions are macros (they pass the library
// version and the size of z_stream for an ABI check), which Swift cannot call: the inline
// functions below expand them.

#include <zlib.h>

static inline int CZlib_deflateInit2(z_streamp stream, int level, int windowBits, int memLevel) {
  return deflateInit2(stream, level, Z_DEFLATED, windowBits, memLevel, Z_DEFAULT_STRATEGY);
}

static inline int CZlib_inflateInit2(z_streamp stream, int windowBits) {
  return inflateInit2(stream, windowBits);
}

#endif
