/// A model: anything that predicts an output for one input.
///
/// ``MayChuBatch`` hands a model whole batches through ``duDoanBatch(_:)``. Its default
/// implementation predicts the inputs one after another; a model that really computes a batch at
/// once (one matrix multiply for 32 rows, one kernel launch) implements ``duDoanBatch(_:)``
/// itself, which is where dynamic batching pays.
///
/// ```swift
/// struct Doubler: MoHinh {
///   func duDoan(_ dauVao: Int) async throws -> Int { dauVao * 2 }
/// }
/// let server = MayChuBatch(moHinh: Doubler(), kichThuocBatch: 32)
/// ```
public protocol MoHinh<DauVao, KetQua>: Sendable {
  associatedtype DauVao: Sendable
  associatedtype KetQua: Sendable

  /// Predicts one input.
  func duDoan(_ dauVao: DauVao) async throws -> KetQua

  /// Predicts many inputs, returning exactly one output per input, in the same order.
  func duDoanBatch(_ dauVao: [DauVao]) async throws -> [KetQua]
}

extension MoHinh {
  /// Predicts the inputs one after another with ``duDoan(_:)``.
  public func duDoanBatch(_ dauVao: [DauVao]) async throws -> [KetQua] {
    var ketQua: [KetQua] = []
    ketQua.reserveCapacity(dauVao.count)
    for x in dauVao {
      try ketQua.append(await duDoan(x))
    }
    return ketQua
  }
}
