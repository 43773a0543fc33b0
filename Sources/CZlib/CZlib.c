// Everything this target needs is in include/CZlib.h; SwiftPM wants one source file.
