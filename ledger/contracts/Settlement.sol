// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Faregate shared ledger
/// @notice The record no single party can quietly rewrite: which operators take
/// part, which terminal keys sign for whom, what each settlement period settled,
/// and what each operator said about it.
///
/// Three roles, each checked on every state change:
///  - the admin (the deployer) admits operators, can move an operator to a new
///    account and can hand the clearing-house role to a new key;
///  - each operator, through its own account, registers and revokes its own
///    terminals' signing keys and acknowledges or disputes batches;
///  - the clearing house commits settlement batches: one transaction per period
///    with the Merkle root of the period's events and each operator's net amount.
///
/// Ids (operators, terminals, stops) are ASCII. Operator ids are left-aligned in
/// a bytes32; terminal ids can be up to 64 bytes, so terminals are keyed by the
/// keccak256 of their id and the id itself travels in the events.
/// @dev Must compile for the London EVM (no PUSH0) so that the same bytecode runs
/// on Clique and older QBFT chains.
contract Settlement {
    /// @notice The contract's interface version: 2 since terminal registrations
    /// carry the terminal key's proof (registerTerminals' keyProofs), 3 since
    /// the admin can move an operator to a new account (replaceOperatorAccount).
    /// Clients refuse a contract of another version instead of misreading its logs.
    uint256 public constant VERSION = 3;

    /// @notice An admitted operator: its account and its cumulative net amount
    /// over all committed batches, in minor units, packed into one storage slot so
    /// that settling an operator costs one slot read and one write.
    struct OperatorState {
        address account;
        int96 balance;
    }

    /// @notice A registered terminal.
    struct TerminalInfo {
        bytes32 operator;      // owning operator id
        bytes32 publicKey;     // ed25519 public key the terminal signs events with
        bytes32 stopHash;      // keccak256 of the stop id it serves (the id is in TerminalRegistered)
        uint64 registeredBlock;
        uint64 revokedBlock;   // 0 while valid
    }

    /// @notice What is stored for one committed batch (two storage slots).
    struct BatchInfo {
        bytes32 root;        // Merkle root (OpenZeppelin StandardMerkleTree, leaf type bytes32)
        uint64 eventCount;   // number of events (leaves) under root
        uint64 periodStart;  // settlement period start, Unix seconds
        uint64 periodEnd;    // settlement period end, Unix seconds
        uint64 blockNumber;  // block that committed it: where its OperatorSettled logs are
    }

    /// @notice An operator's answer to a batch.
    enum Answer {
        None,
        Acknowledged,
        Disputed
    }

    /// @notice An operator's recorded answer to one batch.
    struct Reconciliation {
        Answer answer;
        bytes32 reasonHash; // for a dispute: hash of the operator's reason document
    }

    /// @notice The account that admits operators.
    address public immutable admin;
    /// @notice The account that commits batches.
    address public clearingHouse;

    /// @dev Id of the last committed batch; 0 before the first. Batch ids start at 1.
    uint64 private _lastBatchId;

    mapping(uint64 => BatchInfo) private _batches;
    mapping(bytes32 => OperatorState) private _operators;
    mapping(address => bytes32) private _operatorOfAccount;
    mapping(bytes32 => TerminalInfo) private _terminals;
    mapping(uint64 => mapping(bytes32 => Reconciliation)) private _reconciliations;

    /// @notice The caller is not the admin.
    error NotAdmin(address caller);
    /// @notice The caller is not the clearing house.
    error NotClearingHouse(address caller);
    /// @notice The caller is not an admitted operator's account.
    error NotOperator(address caller);
    /// @notice The caller's operator does not own this terminal.
    error NotTerminalOwner(bytes32 terminalIdHash, bytes32 owner, bytes32 caller);
    /// @notice A batch with this id was already committed.
    error BatchExists(uint64 id);
    /// @notice The id is not the next one: batches are committed strictly in order.
    error BatchOutOfOrder(uint64 expected, uint64 got);
    /// @notice Parallel arrays differ in length.
    error LengthMismatch(uint256 a, uint256 b);
    /// @notice periodStart is after periodEnd.
    error InvalidPeriod(uint64 periodStart, uint64 periodEnd);
    /// @notice operators must be strictly ascending (a canonical list without
    /// duplicates); index is the first offending position.
    error InvalidOperatorOrder(uint256 index);
    /// @notice No batch with this id has been committed.
    error UnknownBatch(uint64 id);
    /// @notice The operator id was never admitted.
    error UnknownOperator(bytes32 operator);
    /// @notice The operator id is already admitted, or the account already acts for one.
    error OperatorExists(bytes32 operator, address account);
    /// @notice An id or account is empty (zero).
    error InvalidArgument(string what);
    /// @notice The terminal id is already registered (ids are never reused, even after revocation).
    error TerminalExists(string id);
    /// @notice No terminal with this id is registered.
    error UnknownTerminal(string id);
    /// @notice The terminal was already revoked.
    error TerminalAlreadyRevoked(string id);
    /// @notice The operator already answered this batch; answers are final.
    error AlreadyAnswered(uint64 batchId, bytes32 operator);
    /// @notice A cumulative balance left the int96 range (about 3.9e28 minor units).
    error BalanceOverflow(bytes32 operator);

    /// @notice The clearing-house role moved to a new account.
    event ClearingHouseChanged(address previous, address current);
    /// @notice The admin admitted an operator.
    event OperatorAdmitted(bytes32 indexed operator, address account);
    /// @notice The admin moved an operator to a new account; the previous one
    /// acts for it no more.
    event OperatorAccountReplaced(bytes32 indexed operator, address previous, address account);
    /// @notice An operator registered a terminal's signing key. keyProof is the
    /// terminal's ed25519 signature of its registration (operator, id, stop,
    /// key), which the contract cannot check: clearing follows a registration
    /// only when it verifies, so no operator can take another's key.
    event TerminalRegistered(
        bytes32 indexed terminalIdHash,
        bytes32 indexed operator,
        string terminalId,
        string stopId,
        bytes32 publicKey,
        bytes keyProof
    );
    /// @notice An operator revoked a terminal: events clearing sees from it afterwards are refused.
    event TerminalRevoked(bytes32 indexed terminalIdHash, bytes32 indexed operator, string terminalId);
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
    /// @notice An operator acknowledged a batch as matching its own records.
    event BatchAcknowledged(uint64 indexed batchId, bytes32 indexed operator);
    /// @notice An operator disputed a batch; reasonHash identifies its reason document.
    event BatchDisputed(uint64 indexed batchId, bytes32 indexed operator, bytes32 reasonHash);

    /// @param clearingHouse_ the account that will commit batches (may equal the deployer)
    constructor(address clearingHouse_) {
        if (clearingHouse_ == address(0)) revert InvalidArgument("clearing house");
        admin = msg.sender;
        clearingHouse = clearingHouse_;
        emit ClearingHouseChanged(address(0), clearingHouse_);
    }

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        _;
    }

    modifier onlyClearingHouse() {
        if (msg.sender != clearingHouse) revert NotClearingHouse(msg.sender);
        _;
    }

    /// @dev The operator id the caller acts for; reverts for any other account.
    function _callerOperator() private view returns (bytes32 op) {
        op = _operatorOfAccount[msg.sender];
        if (op == bytes32(0)) revert NotOperator(msg.sender);
    }

    // ---- admin -------------------------------------------------------------

    /// @notice Hands the clearing-house role to another account (key rotation).
    function setClearingHouse(address account) external onlyAdmin {
        if (account == address(0)) revert InvalidArgument("clearing house");
        // The clearing house does not answer for an operator.
        if (_operatorOfAccount[account] != bytes32(0)) revert OperatorExists(_operatorOfAccount[account], account);
        emit ClearingHouseChanged(clearingHouse, account);
        clearingHouse = account;
    }

    /// @notice Admits an operator acting through account. Each id and each account
    /// can be admitted once; the account is neither the admin's nor the clearing
    /// house's.
    function admitOperator(bytes32 id, address account) external onlyAdmin {
        if (id == bytes32(0)) revert InvalidArgument("operator id");
        if (account == address(0)) revert InvalidArgument("operator account");
        _checkOperatorAccount(account);
        if (_operators[id].account != address(0)) revert OperatorExists(id, _operators[id].account);
        if (_operatorOfAccount[account] != bytes32(0)) revert OperatorExists(_operatorOfAccount[account], account);
        _operators[id].account = account;
        _operatorOfAccount[account] = id;
        emit OperatorAdmitted(id, account);
    }

    /// @notice Moves an admitted operator to a new account, when its key is lost
    /// or stolen: from then on only the new account acts for it, and the old one
    /// is no operator's. The operator's terminals, balance and answers are its
    /// own, not the account's, and stay as they are. The new account must act for
    /// no operator yet.
    function replaceOperatorAccount(bytes32 id, address account) external onlyAdmin {
        address previous = _operators[id].account;
        if (previous == address(0)) revert UnknownOperator(id);
        if (account == address(0)) revert InvalidArgument("operator account");
        _checkOperatorAccount(account);
        if (_operatorOfAccount[account] != bytes32(0)) revert OperatorExists(_operatorOfAccount[account], account);
        delete _operatorOfAccount[previous];
        _operators[id].account = account;
        _operatorOfAccount[account] = id;
        emit OperatorAccountReplaced(id, previous, account);
    }

    /// @dev An operator's account is neither the admin's nor the clearing
    /// house's: each role answers for itself only.
    function _checkOperatorAccount(address account) private view {
        if (account == admin) revert InvalidArgument("operator account is the admin's");
        if (account == clearingHouse) revert InvalidArgument("operator account is the clearing house's");
    }

    // ---- operators: terminal registry -----------------------------------------

    /// @notice Registers terminals of the caller's operator: terminalIds[i] serves
    /// stopIds[i] and signs with publicKeys[i] (ed25519), and keyProofs[i] is
    /// that key's signature of the registration (64 bytes). Several per
    /// transaction because a station opens with dozens of gates.
    function registerTerminals(
        string[] calldata terminalIds,
        string[] calldata stopIds,
        bytes32[] calldata publicKeys,
        bytes[] calldata keyProofs
    ) external {
        bytes32 op = _callerOperator();
        if (terminalIds.length != stopIds.length) revert LengthMismatch(terminalIds.length, stopIds.length);
        if (terminalIds.length != publicKeys.length) revert LengthMismatch(terminalIds.length, publicKeys.length);
        if (terminalIds.length != keyProofs.length) revert LengthMismatch(terminalIds.length, keyProofs.length);
        for (uint256 i; i < terminalIds.length; ++i) {
            _registerTerminal(op, terminalIds[i], stopIds[i], publicKeys[i], keyProofs[i]);
        }
    }

    /// @dev One registration of registerTerminals (its own frame: the four
    /// calldata arrays leave too few stack slots for the loop body).
    function _registerTerminal(
        bytes32 op,
        string calldata id,
        string calldata stopId,
        bytes32 publicKey,
        bytes calldata keyProof
    ) private {
        if (bytes(id).length == 0) revert InvalidArgument("terminal id");
        if (bytes(stopId).length == 0) revert InvalidArgument("stop id");
        if (publicKey == bytes32(0)) revert InvalidArgument("public key");
        if (keyProof.length != 64) revert InvalidArgument("key proof");
        bytes32 h = keccak256(bytes(id));
        TerminalInfo storage t = _terminals[h];
        if (t.operator != bytes32(0)) revert TerminalExists(id);
        t.operator = op;
        t.publicKey = publicKey;
        t.stopHash = keccak256(bytes(stopId));
        t.registeredBlock = uint64(block.number);
        emit TerminalRegistered(h, op, id, stopId, publicKey, keyProof);
    }

    /// @notice Revokes one of the caller's terminals, for good.
    function revokeTerminal(string calldata terminalId) external {
        bytes32 op = _callerOperator();
        bytes32 h = keccak256(bytes(terminalId));
        TerminalInfo storage t = _terminals[h];
        if (t.operator == bytes32(0)) revert UnknownTerminal(terminalId);
        if (t.operator != op) revert NotTerminalOwner(h, t.operator, op);
        if (t.revokedBlock != 0) revert TerminalAlreadyRevoked(terminalId);
        t.revokedBlock = uint64(block.number);
        emit TerminalRevoked(h, op, terminalId);
    }

    // ---- clearing house: batches ----------------------------------------------

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
    /// @param operators admitted operator ids, strictly ascending
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
            // Unsigned comparison of left-aligned ASCII equals string order.
            if (i > 0 && op <= prev) revert InvalidOperatorOrder(i);
            prev = op;
            OperatorState storage s = _operators[op];
            // One slot read gives both the admission check and the balance.
            if (s.account == address(0)) revert UnknownOperator(op);
            int256 balance = int256(s.balance) + nets[i];
            if (balance > type(int96).max || balance < type(int96).min) revert BalanceOverflow(op);
            s.balance = int96(balance);
            emit OperatorSettled(id, op, nets[i], balance);
        }
    }

    // ---- operators: reconciliation --------------------------------------------

    /// @notice The caller's operator acknowledges batch batchId as matching its records.
    function acknowledgeBatch(uint64 batchId) external {
        bytes32 op = _answer(batchId, Answer.Acknowledged, bytes32(0));
        emit BatchAcknowledged(batchId, op);
    }

    /// @notice The caller's operator disputes batch batchId; reasonHash (non-zero)
    /// identifies the reason document kept off chain.
    function disputeBatch(uint64 batchId, bytes32 reasonHash) external {
        if (reasonHash == bytes32(0)) revert InvalidArgument("reason hash");
        bytes32 op = _answer(batchId, Answer.Disputed, reasonHash);
        emit BatchDisputed(batchId, op, reasonHash);
    }

    /// @dev Records the caller's answer. Any admitted operator may answer any batch:
    /// one left out of a batch is exactly who may need to dispute it.
    function _answer(uint64 batchId, Answer a, bytes32 reasonHash) private returns (bytes32 op) {
        op = _callerOperator();
        if (batchId == 0 || batchId > _lastBatchId) revert UnknownBatch(batchId);
        Reconciliation storage r = _reconciliations[batchId][op];
        if (r.answer != Answer.None) revert AlreadyAnswered(batchId, op);
        r.answer = a;
        if (reasonHash != bytes32(0)) r.reasonHash = reasonHash;
    }

    // ---- views ---------------------------------------------------------------

    /// @notice The stored data of a committed batch; reverts with UnknownBatch otherwise.
    function batch(uint64 id) external view returns (BatchInfo memory) {
        if (id == 0 || id > _lastBatchId) revert UnknownBatch(id);
        return _batches[id];
    }

    /// @notice An operator's account and cumulative balance; account is zero if
    /// the id was never admitted.
    function operatorState(bytes32 id) external view returns (address account, int256 balance) {
        OperatorState storage s = _operators[id];
        return (s.account, s.balance);
    }

    /// @notice The operator id an account acts for; zero if none.
    function operatorOf(address account) external view returns (bytes32) {
        return _operatorOfAccount[account];
    }

    /// @notice A registered terminal; reverts with UnknownTerminal otherwise.
    function terminal(string calldata terminalId) external view returns (TerminalInfo memory) {
        TerminalInfo memory t = _terminals[keccak256(bytes(terminalId))];
        if (t.operator == bytes32(0)) revert UnknownTerminal(terminalId);
        return t;
    }

    /// @notice An operator's answer to a batch (Answer.None if it has not answered).
    function reconciliation(uint64 batchId, bytes32 operator) external view returns (Reconciliation memory) {
        return _reconciliations[batchId][operator];
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
