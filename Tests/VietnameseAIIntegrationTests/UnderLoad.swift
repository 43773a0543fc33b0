import Testing

/// The suites that load the machine most (endless unpaced streams, thousands of requests,
/// connections or tokens) run one test at a time.
///
/// Each of them waits on real sockets with generous bounds, but run all at once, beside every
/// other suite, they fight for the same two cores and the same shared event loops, and on a
/// slow machine one of them could outlast its bound for no fault of the server. One at a
/// time, each still runs beside the lighter suites.
@Suite(.serialized)
enum UnderLoad {}
