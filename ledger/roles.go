package ledger

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"

	"github.com/faregate/faregate/ledger/settlementabi"
)

// Account sends the contract's role-protected transactions signed with one
// key: the admin's (AdmitOperator, ReplaceOperatorAccount, SetClearingHouse), an operator's
// (RegisterTerminals, RevokeTerminal, AcknowledgeBatch, DisputeBatch). The
// contract checks every caller; a wrong one fails with ErrNotAdmin,
// ErrNotOperator or ErrNotTerminalOwner before anything is sent. Get one from
// Embedded.Account or Client.Account; it shares their connection.
type Account struct {
	s *settlement
}

// Account returns the Account that signs with key on this ledger's
// connection. One key always gets the same Account, so its transactions are
// serialised (one nonce sequence); the ledger's own key gets the Account that
// shares the commit path's lock.
func (s *settlement) Account(key *ecdsa.PrivateKey) *Account {
	addr := crypto.PubkeyToAddress(key.PublicKey)
	s.accountsMu.Lock()
	defer s.accountsMu.Unlock()
	if a, ok := s.accounts[addr]; ok {
		return a
	}
	if s.accounts == nil {
		s.accounts = make(map[common.Address]*Account)
	}
	a := &Account{s: s}
	if addr != s.from {
		c := newSettlement(s.eth, key, s.chainID, s.log, s.pollMax)
		c.address, c.contract, c.afterMined, c.version = s.address, s.contract, s.afterMined, s.version
		a.s = c
	}
	s.accounts[addr] = a
	return a
}

// Address is the account's address.
func (a *Account) Address() common.Address { return a.s.from }

// do sends one contract call as a transaction, serialised with the key's
// other transactions.
func (a *Account) do(ctx context.Context, what string, data []byte) (Receipt, error) {
	a.s.txMu.Lock()
	defer a.s.txMu.Unlock()
	r, err := a.s.send(ctx, data, nil)
	if err != nil {
		return r, fmt.Errorf("%s: %w", what, err)
	}
	return r, nil
}

// AdmitOperator admits operator id, acting through account. Admin only.
func (a *Account) AdmitOperator(ctx context.Context, id string, account common.Address) (Receipt, error) {
	op, err := EncodeOperator(id)
	if err != nil {
		return Receipt{}, fmt.Errorf("admit operator: %w", err)
	}
	return a.do(ctx, fmt.Sprintf("admit operator %q as %s", id, account), a.s.abi.PackAdmitOperator(op, account))
}

// ReplaceOperatorAccount moves operator id to account (its key lost or
// stolen): the old account acts for no operator from then on; the
// operator's terminals, balance and answers stay its own. Admin only;
// account must act for no operator yet (ErrOperatorExists), id must be
// admitted (ErrUnknownOperator).
func (a *Account) ReplaceOperatorAccount(ctx context.Context, id string, account common.Address) (Receipt, error) {
	op, err := EncodeOperator(id)
	if err != nil {
		return Receipt{}, fmt.Errorf("replace operator account: %w", err)
	}
	if a.s.version < ContractVersion {
		return Receipt{}, fmt.Errorf("move operator %q to account %s: %w: the contract at %s is interface version %d, which cannot move an operator to a new account (version 3 can: deploy one with faregate ledger deploy and register the terminals there)",
			id, account, ErrContractVersion, a.s.address, a.s.version)
	}
	return a.do(ctx, fmt.Sprintf("move operator %q to account %s", id, account), a.s.abi.PackReplaceOperatorAccount(op, account))
}

// SetClearingHouse hands the clearing-house role to account. Admin only.
func (a *Account) SetClearingHouse(ctx context.Context, account common.Address) (Receipt, error) {
	return a.do(ctx, fmt.Sprintf("set clearing house %s", account), a.s.abi.PackSetClearingHouse(account))
}

// TerminalRegistration is one terminal to register.
type TerminalRegistration struct {
	// ID is the terminal id (fare event Terminal field).
	ID string
	// Stop is the stop the terminal serves.
	Stop string
	// PublicKey is the terminal's ed25519 public key.
	PublicKey [32]byte
	// KeyProof is the key's signature of this registration (fare.ProveKey,
	// 64 bytes): clearing follows a registration only when it verifies.
	KeyProof []byte
}

// MaxTerminalsPerTx bounds how many terminals one registration transaction
// carries (about 100k gas each), keeping it well inside any block.
const MaxTerminalsPerTx = 100

// RegisterTerminals registers terminals for the account's operator, in
// transactions of at most MaxTerminalsPerTx. Operator only. It returns the
// receipts of the transactions it sent; on error the earlier ones stand.
func (a *Account) RegisterTerminals(ctx context.Context, ts []TerminalRegistration) ([]Receipt, error) {
	var out []Receipt
	for lo := 0; lo < len(ts); lo += MaxTerminalsPerTx {
		chunk := ts[lo:min(lo+MaxTerminalsPerTx, len(ts))]
		ids := make([]string, len(chunk))
		stops := make([]string, len(chunk))
		keys := make([][32]byte, len(chunk))
		proofs := make([][]byte, len(chunk))
		for i, t := range chunk {
			ids[i], stops[i], keys[i], proofs[i] = t.ID, t.Stop, t.PublicKey, t.KeyProof
		}
		r, err := a.do(ctx, fmt.Sprintf("register terminals %s..%s", ids[0], ids[len(ids)-1]),
			a.s.abi.PackRegisterTerminals(ids, stops, keys, proofs))
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// RevokeTerminal revokes one of the account's operator's terminals for good.
// Operator only.
func (a *Account) RevokeTerminal(ctx context.Context, id string) (Receipt, error) {
	return a.do(ctx, fmt.Sprintf("revoke terminal %q", id), a.s.abi.PackRevokeTerminal(id))
}

// AcknowledgeBatch records that the account's operator agrees with batch id.
// Operator only; answers are final (ErrAlreadyAnswered).
func (a *Account) AcknowledgeBatch(ctx context.Context, id uint64) (Receipt, error) {
	return a.do(ctx, fmt.Sprintf("acknowledge batch %d", id), a.s.abi.PackAcknowledgeBatch(id))
}

// DisputeBatch records that the account's operator disputes batch id, with
// reasonHash identifying its reason document (e.g. its sha256). Operator only;
// answers are final.
func (a *Account) DisputeBatch(ctx context.Context, id uint64, reasonHash [32]byte) (Receipt, error) {
	return a.do(ctx, fmt.Sprintf("dispute batch %d", id), a.s.abi.PackDisputeBatch(id, reasonHash))
}

// Transfer sends wei of the chain's currency to another account (gas money
// for an operator on a private chain) and waits until it is mined.
func (a *Account) Transfer(ctx context.Context, to common.Address, wei *big.Int) (Receipt, error) {
	a.s.txMu.Lock()
	defer a.s.txMu.Unlock()
	s := a.s
	nonce, err := s.eth.PendingNonceAt(ctx, s.from)
	if err != nil {
		return Receipt{}, fmt.Errorf("transfer to %s: %w", to, err)
	}
	head, err := s.eth.HeaderByNumber(ctx, nil)
	if err != nil {
		return Receipt{}, fmt.Errorf("transfer to %s: %w", to, err)
	}
	tip := big.NewInt(params.GWei)
	var txdata types.TxData
	if head.BaseFee != nil {
		feeCap := new(big.Int).Add(new(big.Int).Mul(head.BaseFee, big.NewInt(2)), tip)
		txdata = &types.DynamicFeeTx{ChainID: s.chainID, Nonce: nonce, To: &to, Value: wei, Gas: params.TxGas, GasTipCap: tip, GasFeeCap: feeCap}
	} else {
		price, err := s.eth.SuggestGasPrice(ctx)
		if err != nil {
			return Receipt{}, fmt.Errorf("transfer to %s: %w", to, err)
		}
		txdata = &types.LegacyTx{Nonce: nonce, To: &to, Value: wei, Gas: params.TxGas, GasPrice: price}
	}
	tx, err := types.SignNewTx(s.key, types.LatestSignerForChainID(s.chainID), txdata)
	if err != nil {
		return Receipt{}, fmt.Errorf("transfer to %s: %w", to, err)
	}
	if err := s.eth.SendTransaction(ctx, tx); err != nil {
		if lacksGasFunds(err) {
			return Receipt{}, fmt.Errorf("transfer to %s from %s: %w: %w", to, s.from.Hex(), ErrNoGasFunds, err)
		}
		if nonceTaken(err) {
			return Receipt{}, fmt.Errorf("transfer to %s from %s: %w (the node said: %w)", to, s.from.Hex(), ErrNonceTaken, err)
		}
		return Receipt{}, fmt.Errorf("transfer to %s: %w", to, err)
	}
	rcpt, err := s.waitMined(ctx, tx)
	if err != nil {
		return Receipt{}, fmt.Errorf("transfer to %s: %w", to, err)
	}
	if s.afterMined != nil {
		if err := s.afterMined(ctx, rcpt.TxHash); err != nil {
			return Receipt{}, fmt.Errorf("transfer to %s: %w", to, err)
		}
	}
	return Receipt{TxHash: rcpt.TxHash, BlockNumber: rcpt.BlockNumber.Uint64(), GasUsed: rcpt.GasUsed}, nil
}

// EnsureOperator is the admin's bootstrap for a private chain where the admin
// also holds operators' keys (the embedded chain, tests, the simulator): it
// loads or creates the operator's key in keyFile, admits the operator with that
// account unless already admitted, and tops its balance up to funds. It fails
// with ErrOperatorExists if the id is admitted with another account.
func (a *Account) EnsureOperator(ctx context.Context, id string, keyFile string, funds *big.Int) (*Account, error) {
	key, err := loadOrCreateKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("operator %q key: %w", id, err)
	}
	addr := crypto.PubkeyToAddress(key.PublicKey)
	info, err := a.s.Operator(ctx, id)
	switch {
	case errors.Is(err, ErrUnknownOperator):
		if _, err := a.AdmitOperator(ctx, id, addr); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	case info.Account != addr:
		return nil, fmt.Errorf("operator %q: %w with account %s, key file %s holds %s", id, ErrOperatorExists, info.Account, keyFile, addr)
	}
	bal, err := a.s.eth.BalanceAt(ctx, addr, nil)
	if err != nil {
		return nil, fmt.Errorf("operator %q balance: %w", id, err)
	}
	if funds != nil && bal.Cmp(funds) < 0 {
		if _, err := a.Transfer(ctx, addr, new(big.Int).Sub(funds, bal)); err != nil {
			return nil, fmt.Errorf("fund operator %q: %w", id, err)
		}
	}
	return a.s.Account(key), nil
}

// OperatorInfo is an admitted operator as the contract holds it.
type OperatorInfo struct {
	ID      string
	Account common.Address
	// Balance is the cumulative net amount over all committed batches, in
	// minor units.
	Balance int64
}

// Operator reads an operator's account and cumulative balance;
// ErrUnknownOperator if it was never admitted.
func (s *settlement) Operator(ctx context.Context, id string) (OperatorInfo, error) {
	op, err := EncodeOperator(id)
	if err != nil {
		return OperatorInfo{}, fmt.Errorf("read operator: %w", err)
	}
	st, err := bind.Call(s.contract, s.callOpts(ctx), s.abi.PackOperatorState(op), s.abi.UnpackOperatorState)
	if err != nil {
		return OperatorInfo{}, fmt.Errorf("read operator %q: %w", id, mapRevert(err))
	}
	if st.Account == (common.Address{}) {
		return OperatorInfo{}, fmt.Errorf("read operator %q: %w", id, ErrUnknownOperator)
	}
	if !st.Balance.IsInt64() {
		return OperatorInfo{}, fmt.Errorf("read operator %q: balance %s does not fit int64", id, st.Balance)
	}
	return OperatorInfo{ID: id, Account: st.Account, Balance: st.Balance.Int64()}, nil
}

// OperatorBalance returns the operator's cumulative net amount over all
// committed batches, as kept by the contract; 0 for an operator admitted but
// never settled.
func (s *settlement) OperatorBalance(ctx context.Context, operator string) (int64, error) {
	info, err := s.Operator(ctx, operator)
	if err != nil {
		return 0, err
	}
	return info.Balance, nil
}

// Roles returns the admin and clearing-house accounts.
func (s *settlement) Roles(ctx context.Context) (admin, clearingHouse common.Address, err error) {
	admin, err = bind.Call(s.contract, s.callOpts(ctx), s.abi.PackAdmin(), s.abi.UnpackAdmin)
	if err != nil {
		return admin, clearingHouse, fmt.Errorf("read admin: %w", err)
	}
	clearingHouse, err = bind.Call(s.contract, s.callOpts(ctx), s.abi.PackClearingHouse(), s.abi.UnpackClearingHouse)
	if err != nil {
		return admin, clearingHouse, fmt.Errorf("read clearing house: %w", err)
	}
	return admin, clearingHouse, nil
}

// Terminal is a registered terminal as the contract stores it.
type Terminal struct {
	ID       string
	Operator string
	// StopHash is keccak256 of the stop id; the id itself is in the
	// registration's log (see TerminalChanges).
	StopHash        [32]byte
	PublicKey       [32]byte
	RegisteredBlock uint64
	// RevokedBlock is 0 while the terminal is valid.
	RevokedBlock uint64
}

// Terminal reads one terminal; ErrUnknownTerminal if it was never registered.
func (s *settlement) Terminal(ctx context.Context, id string) (Terminal, error) {
	t, err := bind.Call(s.contract, s.callOpts(ctx), s.abi.PackTerminal(id), s.abi.UnpackTerminal)
	if err != nil {
		return Terminal{}, fmt.Errorf("read terminal %q: %w", id, mapRevert(err))
	}
	return Terminal{
		ID: id, Operator: DecodeOperator(t.Operator), StopHash: t.StopHash, PublicKey: t.PublicKey,
		RegisteredBlock: t.RegisteredBlock, RevokedBlock: t.RevokedBlock,
	}, nil
}

// Answer is an operator's answer to a batch.
type Answer uint8

// Answers, as the contract numbers them.
const (
	AnswerNone Answer = iota
	Acknowledged
	Disputed
)

// String is the answer as the CLI and the API write it.
func (a Answer) String() string {
	switch a {
	case AnswerNone:
		return "none"
	case Acknowledged:
		return "acknowledged"
	case Disputed:
		return "disputed"
	}
	return fmt.Sprintf("answer(%d)", uint8(a))
}

// Reconciliation is an operator's recorded answer to one batch.
type Reconciliation struct {
	Answer Answer
	// ReasonHash identifies a dispute's reason document; zero otherwise.
	ReasonHash [32]byte
}

// Reconciliation reads operator's answer to batch id (AnswerNone if none).
func (s *settlement) Reconciliation(ctx context.Context, id uint64, operator string) (Reconciliation, error) {
	op, err := EncodeOperator(operator)
	if err != nil {
		return Reconciliation{}, fmt.Errorf("read reconciliation: %w", err)
	}
	r, err := bind.Call(s.contract, s.callOpts(ctx), s.abi.PackReconciliation(id, op), s.abi.UnpackReconciliation)
	if err != nil {
		return Reconciliation{}, fmt.Errorf("read reconciliation of batch %d by %q: %w", id, operator, mapRevert(err))
	}
	return Reconciliation{Answer: Answer(r.Answer), ReasonHash: r.ReasonHash}, nil
}

// RegistryRead is what one read of the terminal registry's changes found.
type RegistryRead struct {
	// Changes are the changes read, in chain order.
	Changes []TerminalChange
	// Next is the block to read from next time; Head the hash of block
	// Next-1 as the read found it. Where that block is another (or none)
	// later, the chain reorganised or rewound under what was read, and a
	// follower reads again from a block both chains hold. On an error,
	// Next is the first block not read and Head is zero.
	Next uint64
	Head common.Hash
}

// TerminalChange is one registry change read from the chain's logs.
type TerminalChange struct {
	Block uint64
	// Revoked: the terminal was revoked; otherwise it was registered.
	Revoked   bool
	ID        string
	Operator  string
	Stop      string   // registrations only
	PublicKey [32]byte // registrations only
	KeyProof  []byte   // registrations only: as the operator sent it, unchecked
}

var (
	terminalRegisteredTopic = settlementBinding.GetABI().Events[settlementabi.SettlementTerminalRegisteredEventName].ID
	terminalRevokedTopic    = settlementBinding.GetABI().Events[settlementabi.SettlementTerminalRevokedEventName].ID
)

// logRangeBlocks bounds one eth_getLogs range: public nodes refuse wide ones.
const logRangeBlocks = 5000

// eachLog calls fn with each of the contract's logs under topics in blocks
// from `from` (or the contract's deployment block, if later) up to the
// current head, in chain order (logs of blocks a reorg removed are passed
// over), reading at most logRangeBlocks blocks a request, and returns the
// block to read from next time: past the head, or the first block of the
// range that failed (what names the reading in errors).
// headHash is the hash of the head block as the scan began: a later read
// that finds another block at that height knows the chain reorganised or
// rewound under what was read (ChainTerminals reads the registry again).
func (s *settlement) eachLog(ctx context.Context, what string, from uint64, topics []common.Hash, fn func(l *types.Log) error) (next uint64, headHash common.Hash, err error) {
	hd, err := s.eth.HeaderByNumber(ctx, nil)
	if err != nil {
		return from, common.Hash{}, fmt.Errorf("%s: head: %w", what, err)
	}
	head := hd.Number.Uint64()
	// Nothing of the contract's lies before its deployment: on a long-lived
	// chain, scanning from block 0 is hundreds of requests. Searching for
	// the block is worth it only when the scan takes more than one.
	from = max(from, s.logStartBlock(ctx, head, head-min(head, from) >= logRangeBlocks))
	// A provider that caps the logs one request returns refuses a range
	// holding more (a mass registration): the range is halved until it
	// answers, or is one block (an outside review: the same range asked
	// again for ever).
	span := uint64(logRangeBlocks)
	for lo := from; lo <= head; lo += span {
		hi := min(lo+span-1, head)
		logs, err := s.eth.FilterLogs(ctx, ethereum.FilterQuery{
			FromBlock: new(big.Int).SetUint64(lo),
			ToBlock:   new(big.Int).SetUint64(hi),
			Addresses: []common.Address{s.address},
			Topics:    [][]common.Hash{topics},
		})
		if err != nil && hi > lo && ctx.Err() == nil {
			span = max(1, (hi-lo+1)/2)
			lo -= span // the same lo again, in a smaller range
			continue
		}
		if err != nil {
			return lo, common.Hash{}, fmt.Errorf("%s in blocks %d-%d: %w", what, lo, hi, err)
		}
		for i := range logs {
			if logs[i].Removed {
				continue
			}
			if err := fn(&logs[i]); err != nil {
				return lo, common.Hash{}, fmt.Errorf("%s: block %d: %w", what, logs[i].BlockNumber, err)
			}
		}
	}
	return head + 1, hd.Hash(), nil
}

// BlockHash returns the hash of block n of the chain as the node has it
// now; ErrBlockNotFound when the chain is shorter (it rewound).
func (s *settlement) BlockHash(ctx context.Context, n uint64) (common.Hash, error) {
	h, err := s.eth.HeaderByNumber(ctx, new(big.Int).SetUint64(n))
	if errors.Is(err, ethereum.NotFound) {
		return common.Hash{}, fmt.Errorf("block %d: %w", n, ErrBlockNotFound)
	}
	if err != nil {
		return common.Hash{}, fmt.Errorf("block %d: %w", n, err)
	}
	return h.Hash(), nil
}

// TerminalChanges returns the terminal registry's changes in blocks from
// `from` up to the current head, in chain order, and where to read from
// next time. Replaying every change from block 0 rebuilds the registry;
// following it block by block keeps a cache current.
func (s *settlement) TerminalChanges(ctx context.Context, from uint64) (RegistryRead, error) {
	var out []TerminalChange
	next, head, err := s.eachLog(ctx, "terminal changes", from, []common.Hash{terminalRegisteredTopic, terminalRevokedTopic}, func(l *types.Log) error {
		switch l.Topics[0] {
		case terminalRegisteredTopic:
			ev, err := s.abi.UnpackTerminalRegisteredEvent(l)
			if err != nil {
				return err
			}
			out = append(out, TerminalChange{
				Block: l.BlockNumber, ID: ev.TerminalId, Operator: DecodeOperator(ev.Operator),
				Stop: ev.StopId, PublicKey: ev.PublicKey, KeyProof: ev.KeyProof,
			})
		case terminalRevokedTopic:
			ev, err := s.abi.UnpackTerminalRevokedEvent(l)
			if err != nil {
				return err
			}
			out = append(out, TerminalChange{
				Block: l.BlockNumber, Revoked: true, ID: ev.TerminalId, Operator: DecodeOperator(ev.Operator),
			})
		}
		return nil
	})
	return RegistryRead{Changes: out, Next: next, Head: head}, err
}

// BatchAnswer is one operator's answer to a batch read from the chain's
// logs: who answered which batch (Reconciliation says how).
type BatchAnswer struct {
	Block    uint64
	BatchID  uint64
	Operator string
}

var (
	batchAcknowledgedTopic = settlementBinding.GetABI().Events[settlementabi.SettlementBatchAcknowledgedEventName].ID
	batchDisputedTopic     = settlementBinding.GetABI().Events[settlementabi.SettlementBatchDisputedEventName].ID
)

// BatchAnswers returns the operators' answers (acknowledgements and
// disputes) in blocks from `from` up to the current head, in chain order,
// and the block to read from next time. Any admitted operator may answer
// any batch, so this is how to learn who answered one without knowing
// every operator beforehand.
func (s *settlement) BatchAnswers(ctx context.Context, from uint64) ([]BatchAnswer, uint64, error) {
	var out []BatchAnswer
	next, _, err := s.eachLog(ctx, "batch answers", from, []common.Hash{batchAcknowledgedTopic, batchDisputedTopic}, func(l *types.Log) error {
		switch l.Topics[0] {
		case batchAcknowledgedTopic:
			ev, err := s.abi.UnpackBatchAcknowledgedEvent(l)
			if err != nil {
				return err
			}
			out = append(out, BatchAnswer{Block: l.BlockNumber, BatchID: ev.BatchId, Operator: DecodeOperator(ev.Operator)})
		case batchDisputedTopic:
			ev, err := s.abi.UnpackBatchDisputedEvent(l)
			if err != nil {
				return err
			}
			out = append(out, BatchAnswer{Block: l.BlockNumber, BatchID: ev.BatchId, Operator: DecodeOperator(ev.Operator)})
		}
		return nil
	})
	return out, next, err
}

// KeyAccount is the Account of the ledger's own signing key (the clearing
// house's for Embedded; whatever key Dial was given for a Client; nil for
// DialReadOnly).
func (s *settlement) KeyAccount() *Account {
	if s.key == nil {
		return nil // read-only: no key, no account
	}
	return s.Account(s.key)
}

// ReadKeyFile reads a hex secp256k1 private key file (optional 0x prefix), the
// format Dial takes.
func ReadKeyFile(path string) (*ecdsa.PrivateKey, error) { return readKeyFile(path) }
