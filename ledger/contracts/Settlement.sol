// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Faregate settlement ledger
/// @notice One transaction per clearing settlement period: the Merkle root of the
/// period's events plus each operator's net amount. Anyone holding an event and
/// its proof can check the event's inclusion with `verify`, without trusting the
/// clearing house's database.
/// @dev Kept deliberately lean: one account (the deployer, the clearing house)
/// commits batches. A later version adds roles (admin, operator addresses, a
/// terminal registry, acknowledge/dispute); the only access check lives in
/// `onlyClearingHouse` so that it can be replaced by a role check without touching
/// the batch logic. Must compile for the London EVM (no PUSH0) so that the same
/// bytecode also runs on Clique chains.
contract Settlement {
    /// @notice What is stored for one committed batch (two storage slots).
    struct BatchInfo {
        bytes32 root;        // Merkle root (OpenZeppelin StandardMerkleTree, leaf type bytes32)
        uint64 eventCount;   // number of events (leaves) under root
        uint64 periodStart;  // settlement period start, Unix seconds
        uint64 periodEnd;    // settlement period end, Unix seconds
        uint64 blockNumber;  // block that committed it: where its OperatorSettled logs are
    }

    /// @notice The only account allowed to commit batches (the deployer).
    address public immutable clearingHouse;

    /// @dev Id of the last committed batch; 0 before the first. Batch ids start at 1.
    uint64 private _lastBatchId;

    mapping(uint64 => BatchInfo) private _batches;

    /// @notice Cumulative net amount of each operator over all committed batches,
    /// in minor units. Operator ids are ASCII strings left-aligned in bytes32.
    mapping(bytes32 => int256) public balanceOf;

    /// @notice The caller is not the clearing house.
    error NotClearingHouse(address caller);
    /// @notice A batch with this id was already committed.
    error BatchExists(uint64 id);
    /// @notice The id is not the next one: batches are committed strictly in order.
    error BatchOutOfOrder(uint64 expected, uint64 got);
    /// @notice operators and nets differ in length.
    error LengthMismatch(uint256 operators, uint256 nets);
    /// @notice periodStart is after periodEnd.
    error InvalidPeriod(uint64 periodStart, uint64 periodEnd);
    /// @notice operators must be non-zero and strictly ascending (a canonical list
    /// without duplicates); index is the first offending position.
    error InvalidOperatorOrder(uint256 index);
    /// @notice No batch with this id has been committed.
    error UnknownBatch(uint64 id);

    /// @notice A batch was committed. Its per-operator amounts follow as
    /// OperatorSettled logs in the same transaction.
    event BatchCommitted(
        uint64 indexed batchId,
        bytes32 root,
        uint64 eventCount,
        uint64 periodStart,
        uint64 periodEnd,
        uint256 operatorCount
    );

    /// @notice One operator's net amount in a batch and its cumulative balance after it.
    event OperatorSettled(uint64 indexed batchId, bytes32 indexed operator, int256 net, int256 balance);

    constructor() {
        clearingHouse = msg.sender;
    }

    modifier onlyClearingHouse() {
        if (msg.sender != clearingHouse) revert NotClearingHouse(msg.sender);
        _;
    }

    /// @notice The id the next commitBatch must use.
    function nextBatchId() external view returns (uint64) {
        return _lastBatchId + 1;
    }

    /// @notice Commits one settlement period.
    /// @param id must equal nextBatchId()
    /// @param root Merkle root of the period's events
    /// @param eventCount number of events under root
    /// @param periodStart period start, Unix seconds
    /// @param periodEnd period end, Unix seconds (>= periodStart)
    /// @param operators operator ids, strictly ascending, non-zero
    /// @param nets each operator's net amount in minor units (same order)
    function commitBatch(
        uint64 id,
        bytes32 root,
        uint64 eventCount,
        uint64 periodStart,
        uint64 periodEnd,
        bytes32[] calldata operators,
        int256[] calldata nets
    ) external onlyClearingHouse {
        uint64 last = _lastBatchId;
        if (id != 0 && id <= last) revert BatchExists(id);
        if (id != last + 1) revert BatchOutOfOrder(last + 1, id);
        if (operators.length != nets.length) revert LengthMismatch(operators.length, nets.length);
        if (periodStart > periodEnd) revert InvalidPeriod(periodStart, periodEnd);

        _lastBatchId = id;
        _batches[id] = BatchInfo({
            root: root,
            eventCount: eventCount,
            periodStart: periodStart,
            periodEnd: periodEnd,
            blockNumber: uint64(block.number)
        });
        emit BatchCommitted(id, root, eventCount, periodStart, periodEnd, operators.length);

        bytes32 prev;
        for (uint256 i; i < operators.length; ++i) {
            bytes32 op = operators[i];
            // Unsigned comparison of left-aligned ASCII equals string order, and
            // op > prev (prev starting at 0) also rejects the zero id.
            if (op <= prev) revert InvalidOperatorOrder(i);
            prev = op;
            int256 balance = balanceOf[op] + nets[i];
            balanceOf[op] = balance;
            emit OperatorSettled(id, op, nets[i], balance);
        }
    }

    /// @notice The stored data of a committed batch; reverts with UnknownBatch otherwise.
    function batch(uint64 id) external view returns (BatchInfo memory) {
        if (id == 0 || id > _lastBatchId) revert UnknownBatch(id);
        return _batches[id];
    }

    /// @notice Checks that value is a leaf of batch batchId's Merkle tree.
    /// @dev Same scheme as OpenZeppelin's StandardMerkleTree with leaf encoding
    /// ["bytes32"] and MerkleProof.verify: the leaf is
    /// keccak256(bytes.concat(keccak256(abi.encode(value)))) (double hashing keeps a
    /// leaf from being confused with an inner node), inner nodes hash the sorted pair.
    /// Reverts with UnknownBatch for an id that was never committed, so a caller can
    /// tell "no such batch" from "not included".
    function verify(uint64 batchId, bytes32 value, bytes32[] calldata proof) external view returns (bool) {
        if (batchId == 0 || batchId > _lastBatchId) revert UnknownBatch(batchId);
        bytes32 node = keccak256(bytes.concat(keccak256(abi.encode(value))));
        for (uint256 i; i < proof.length; ++i) {
            node = _hashPair(node, proof[i]);
        }
        return node == _batches[batchId].root;
    }

    /// @dev keccak256 of the two nodes, smaller first, hashed in scratch space.
    function _hashPair(bytes32 a, bytes32 b) private pure returns (bytes32 h) {
        if (a > b) (a, b) = (b, a);
        assembly ("memory-safe") {
            mstore(0x00, a)
            mstore(0x20, b)
            h := keccak256(0x00, 0x40)
        }
    }
}
