// Package ledger anchors Faregate's clearing results on an Ethereum chain.
//
// Each clearing settlement period becomes one transaction to the Settlement
// contract (ledger/contracts/Settlement.sol): the Merkle root of the period's
// events (built with package ledger/merkle), the event count, the period bounds
// and every operator's net amount. The contract keeps cumulative per-operator
// balances, and anyone holding an event and its Merkle proof can check the
// event's inclusion with the contract's verify view — so operators need not trust
// the clearing house's own database.
//
// Two implementations of [Ledger] share all contract-calling code and differ only
// in how they reach a chain:
//
//   - [OpenEmbedded] runs an in-process, single-node Ethereum chain in a data
//     directory (geth's dev mode: a node, the eth service and a simulated beacon
//     that seals a block as soon as a transaction is pending). It is the default:
//     no infrastructure to run, CommitBatch returns in milliseconds, and every
//     reported commit survives kill -9.
//   - [Dial] talks JSON-RPC to any Ethereum node, for production chains.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// OperatorAmount is one operator's net amount in a batch, in minor units.
// Positive means the operator is owed money for the period.
type OperatorAmount struct {
	// Operator is the operator id: 1 to 32 printable ASCII characters. On chain
	// it is a bytes32, left-aligned and zero padded.
	Operator string
	// Net is the operator's net amount for the period in minor units.
	Net int64
}

// Batch is one committed settlement period.
type Batch struct {
	// ID is the batch's sequence number: batches are committed strictly in order
	// starting at 1, so a gap or a repeat is caught by the contract.
	ID uint64
	// Root is the Merkle root (package ledger/merkle) of the period's events.
	Root [32]byte
	// EventCount is the number of events (leaves) under Root.
	EventCount uint64
	// PeriodStart and PeriodEnd bound the settlement period. The chain stores
	// Unix seconds: CommitBatch truncates to whole seconds and Batch returns UTC.
	PeriodStart time.Time
	PeriodEnd   time.Time
	// Amounts holds each operator's net amount, sorted by Operator, without
	// duplicates. CommitBatch sorts a copy if needed.
	Amounts []OperatorAmount
	// BlockNumber and TxHash say where the batch was committed; read from
	// the chain (the contract keeps the block, its BatchCommitted log the
	// transaction), ignored by CommitBatch.
	BlockNumber uint64
	TxHash      [32]byte
	// CommittedAt is the committing block's time (whole seconds, UTC):
	// when the batch went on chain, as the chain says. Read, like
	// BlockNumber, and ignored by CommitBatch.
	CommittedAt time.Time
}

// Receipt describes the mined transaction that committed a batch.
type Receipt struct {
	TxHash      [32]byte
	BlockNumber uint64
	GasUsed     uint64
}

// Sentinel errors. They are returned wrapped with context; test with errors.Is.
var (
	// ErrBatchNotFound: no batch with that id has been committed.
	ErrBatchNotFound = errors.New("ledger: batch not found")
	// ErrBlockNotFound: the chain has no block of that number (yet, or any
	// more: a node restarted without its recent blocks).
	ErrBlockNotFound = errors.New("ledger: no such block")
	// ErrBatchExists: a batch with that id was already committed.
	ErrBatchExists = errors.New("ledger: batch already committed")
	// ErrBatchOutOfOrder: the id is not the next one (see NextBatchID).
	ErrBatchOutOfOrder = errors.New("ledger: batch id out of order")
	// ErrInvalidBatch: the batch is malformed (bad operator id, duplicate
	// operator, period end before start, negative time), caught before sending.
	ErrInvalidBatch = errors.New("ledger: invalid batch")
	// ErrNotClearingHouse: the signing account is not the contract's clearing
	// house, so the contract refuses its commits.
	ErrNotClearingHouse = errors.New("ledger: signer is not the clearing house")
	// ErrNotAdmin: the signing account is not the contract's admin.
	ErrNotAdmin = errors.New("ledger: signer is not the admin")
	// ErrNotOperator: the signing account is no admitted operator's account.
	ErrNotOperator = errors.New("ledger: signer is not an admitted operator")
	// ErrNotTerminalOwner: the terminal belongs to another operator.
	ErrNotTerminalOwner = errors.New("ledger: terminal belongs to another operator")
	// ErrUnknownOperator: the operator id was never admitted.
	ErrUnknownOperator = errors.New("ledger: operator not admitted")
	// ErrOperatorExists: the operator id, or the account, is already admitted.
	ErrOperatorExists = errors.New("ledger: operator or account already admitted")
	// ErrTerminalExists: the terminal id is already registered (ids are never
	// reused, even after revocation).
	ErrTerminalExists = errors.New("ledger: terminal already registered")
	// ErrUnknownTerminal: no terminal with that id is registered.
	ErrUnknownTerminal = errors.New("ledger: terminal not registered")
	// ErrTerminalRevoked: the terminal was already revoked.
	ErrTerminalRevoked = errors.New("ledger: terminal already revoked")
	// ErrAlreadyAnswered: the operator already acknowledged or disputed the
	// batch; answers are final.
	ErrAlreadyAnswered = errors.New("ledger: batch already answered by this operator")
	// ErrInvalidArgument: an empty id, key or account, or lists of different
	// lengths.
	ErrInvalidArgument = errors.New("ledger: invalid argument")
	// ErrClosed: the ledger was closed.
	ErrClosed = errors.New("ledger: closed")
	// ErrNoGasFunds: the signing account has too little ether to pay for
	// the transaction's gas; nothing was sent.
	ErrNoGasFunds = errors.New("ledger: the signing account cannot pay for gas (send it ether on this chain: on the embedded dev chain `faregate ledger admit` funds an operator; elsewhere the chain's faucet or its validators)")
	// ErrNonceTaken: the node refused a transaction because another from
	// the same account holds its nonce: one in flight (another process
	// signing with the key) or one just mined. Nothing of this one was
	// sent; sending again takes the next nonce.
	ErrNonceTaken = errors.New("ledger: another transaction from this account is in flight or was just mined; retry")
	// ErrReadOnly: a ledger dialled without a key (DialReadOnly) was asked
	// to send a transaction.
	ErrReadOnly = errors.New("ledger: read-only connection, no key to sign with (give --eth-key)")
	// ErrNotMined is returned when a sent transaction, and those sent again
	// in its place with higher fees (BumpAfter), have no receipt after
	// MineWait. The caller may send it again (a batch commit re-reads the
	// chain first).
	ErrNotMined = errors.New("ledger: transaction not mined")
)

// Ledger is what clearing uses to anchor settlement periods. Both [*Embedded]
// and [*Client] implement it, and are safe for concurrent use; commits are
// serialised internally because batch ids are sequential anyway.
type Ledger interface {
	// NextBatchID returns the id the next CommitBatch must use.
	NextBatchID(ctx context.Context) (uint64, error)
	// CommitBatch sends the batch and returns once its transaction is mined (and,
	// for the embedded chain, durably on disk). A batch whose id is already
	// committed fails with ErrBatchExists, one that skips ids with
	// ErrBatchOutOfOrder; both are detected before sending, and mapped from the
	// contract's revert if another sender wins a race.
	//
	// If ctx ends after the transaction was sent, the batch may still be
	// committed. Retrying is safe: a retry of a committed batch fails with
	// ErrBatchExists, and Batch(id) then shows what the chain holds.
	CommitBatch(ctx context.Context, b Batch) (Receipt, error)
	// Batch reads a committed batch back from the chain; ErrBatchNotFound if none.
	Batch(ctx context.Context, id uint64) (Batch, error)
	// VerifyInclusion asks the contract whether value is under batch batchID's
	// root according to proof (a ledger/merkle proof). ErrBatchNotFound if the
	// batch does not exist.
	VerifyInclusion(ctx context.Context, batchID uint64, value [32]byte, proof [][32]byte) (bool, error)
	// OperatorBalance is the operator's cumulative net amount over all
	// committed batches, as the contract keeps it.
	OperatorBalance(ctx context.Context, operator string) (int64, error)
	// TerminalChanges returns the on-chain terminal registry's changes from
	// block `from` to the head, in chain order, and where to read next.
	TerminalChanges(ctx context.Context, from uint64) (RegistryRead, error)
	// BlockHash returns the hash of block n as the chain has it now;
	// ErrBlockNotFound when the chain is shorter (it rewound).
	BlockHash(ctx context.Context, n uint64) (common.Hash, error)
	// ContractAddress is the Settlement contract's address.
	ContractAddress() common.Address
	// ChainID is the id of the chain the ledger is on (EIP-155), as the
	// node said when the ledger was opened.
	ChainID() uint64
	// Close releases the connection (and, for the embedded chain, the node).
	Close() error
}

// MaxOperatorLen is the longest operator id: it must fit a bytes32.
const MaxOperatorLen = 32

// EncodeOperator converts an operator id to its on-chain bytes32 form
// (left-aligned, zero padded). Ids are 1 to 32 printable ASCII characters
// (0x21-0x7e): no NUL, so decoding is unambiguous, and no spaces, so ids cannot
// look alike.
func EncodeOperator(id string) ([32]byte, error) {
	var out [32]byte
	if len(id) == 0 || len(id) > MaxOperatorLen {
		return out, fmt.Errorf("%w: operator id %q: length %d, want 1 to %d", ErrInvalidBatch, id, len(id), MaxOperatorLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return out, fmt.Errorf("%w: operator id %q: byte %d (0x%02x) is not printable ASCII", ErrInvalidBatch, id, i, c)
		}
	}
	copy(out[:], id)
	return out, nil
}

// DecodeOperator is the inverse of EncodeOperator.
func DecodeOperator(b [32]byte) string {
	return strings.TrimRight(string(b[:]), "\x00")
}

// encodedBatch is a validated batch in contract argument form.
type encodedBatch struct {
	id          uint64
	root        [32]byte
	eventCount  uint64
	periodStart uint64
	periodEnd   uint64
	operators   [][32]byte
	nets        []int64
}

// encodeBatch validates b and converts it to contract arguments. Amounts are
// sorted by operator id: byte order of the ASCII ids equals the order of their
// left-aligned bytes32 forms, which the contract requires to be strictly
// ascending.
func encodeBatch(b Batch) (encodedBatch, error) {
	if b.ID == 0 {
		return encodedBatch{}, fmt.Errorf("%w: batch id 0 (ids start at 1)", ErrInvalidBatch)
	}
	start, end := b.PeriodStart.Unix(), b.PeriodEnd.Unix()
	if start < 0 || end < 0 {
		return encodedBatch{}, fmt.Errorf("%w: period before 1970", ErrInvalidBatch)
	}
	if end < start {
		return encodedBatch{}, fmt.Errorf("%w: period end %s before start %s", ErrInvalidBatch, b.PeriodEnd, b.PeriodStart)
	}
	amounts := slices.Clone(b.Amounts)
	slices.SortFunc(amounts, func(x, y OperatorAmount) int { return strings.Compare(x.Operator, y.Operator) })
	e := encodedBatch{
		id:          b.ID,
		root:        b.Root,
		eventCount:  b.EventCount,
		periodStart: uint64(start),
		periodEnd:   uint64(end),
		operators:   make([][32]byte, len(amounts)),
		nets:        make([]int64, len(amounts)),
	}
	for i, a := range amounts {
		if i > 0 && amounts[i-1].Operator == a.Operator {
			return encodedBatch{}, fmt.Errorf("%w: operator %q appears twice", ErrInvalidBatch, a.Operator)
		}
		op, err := EncodeOperator(a.Operator)
		if err != nil {
			return encodedBatch{}, err
		}
		e.operators[i] = op
		e.nets[i] = a.Net
	}
	return e, nil
}
