package ledger

import (
	"context"
	"crypto/ecdsa"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/faregate/faregate/ledger/settlementabi"
)

// settlement is the contract-calling code shared by Embedded and Client: they
// differ only in how the *ethclient.Client is made.
type settlement struct {
	eth      *ethclient.Client
	abi      *settlementabi.Settlement
	contract *bind.BoundContract
	address  common.Address
	key      *ecdsa.PrivateKey
	from     common.Address
	chainID  *big.Int
	log      *slog.Logger

	// pollMax caps the receipt polling interval: a few ms for the embedded
	// chain, which seals at once, longer for remote chains with 12 s slots.
	pollMax time.Duration
	// afterMined, when set, is called after one of our transactions is mined
	// and before it is reported: the embedded chain lets its transaction pool
	// catch up and syncs its store there, so what we report survives kill -9.
	afterMined func(ctx context.Context, tx common.Hash) error

	// afterSend, when set, is called with each commit's transaction hash
	// after it is sent and before its receipt is awaited (fault injection).
	afterSend func(common.Hash)

	// version is the bound contract's interface version: ContractVersion,
	// or 2 (an earlier build's, read and written alike but for what
	// version 3 added: replaceOperatorAccount).
	version uint64

	// txMu serialises this key's transactions: batch ids are sequential, and
	// one in-flight transaction per key keeps nonce handling trivial.
	txMu sync.Mutex

	// accounts holds the Accounts made from this connection, by address, so
	// that one key always maps to one txMu.
	accountsMu sync.Mutex
	accounts   map[common.Address]*Account

	// logStart is the first block the contract's logs can be in (its
	// deployment block) once logStartKnown: log scans start there, not at
	// block 0, which on a long-lived chain is hundreds of requests.
	logStartMu    sync.Mutex
	logStart      uint64
	logStartKnown bool
}

var (
	settlementBinding = settlementabi.NewSettlement()
	// Event signatures (topic 0) of the contract's two events.
	batchCommittedTopic  = settlementBinding.GetABI().Events[settlementabi.SettlementBatchCommittedEventName].ID
	operatorSettledTopic = settlementBinding.GetABI().Events[settlementabi.SettlementOperatorSettledEventName].ID
)

// ChainID is the chain's id (EIP-155).
func (s *settlement) ChainID() uint64 { return s.chainID.Uint64() }

func newSettlement(eth *ethclient.Client, key *ecdsa.PrivateKey, chainID *big.Int, log *slog.Logger, pollMax time.Duration) *settlement {
	s := &settlement{
		eth:     eth,
		abi:     settlementBinding,
		key:     key,
		chainID: chainID,
		log:     log,
		pollMax: pollMax,
	}
	if key != nil {
		s.from = crypto.PubkeyToAddress(key.PublicKey)
	}
	return s
}

// bindTo points the settlement at a deployed contract, checking there is code.
func (s *settlement) bindTo(ctx context.Context, addr common.Address) error {
	code, err := s.eth.CodeAt(ctx, addr, nil)
	if err != nil {
		return fmt.Errorf("read code at %s: %w", addr, err)
	}
	if len(code) == 0 {
		return fmt.Errorf("no contract at %s", addr)
	}
	s.address = addr
	s.contract = s.abi.Instance(s.eth, addr)
	// A contract of another interface version has other logs and calls:
	// read with this binding its terminal registrations would all be
	// missed, and registrations would revert without a word of why.
	v, err := bind.Call(s.contract, s.callOpts(ctx), s.abi.PackVERSION(), s.abi.UnpackVERSION)
	creation := common.FromHex(settlementabi.SettlementMetaData.Bin)
	switch {
	case err == nil && v != nil && v.IsUint64() && v.Uint64() == ContractVersion:
	case err == nil && v != nil && v.IsUint64() && v.Uint64() == 2:
		// An earlier build's contract: its logs and calls are this
		// build's but for replaceOperatorAccount, so a deployment keeps
		// its chain across the upgrade.
		creation = common.FromHex(strings.TrimSpace(settlementV2))
	default:
		have := "none (a contract from before key proofs, or not Faregate's Settlement)"
		if err == nil && v != nil {
			have = v.String()
		}
		return fmt.Errorf("%w: the contract at %s has interface version %s, this build reads 2 and %d: deploy a new one (faregate ledger deploy) and register the terminals there with their key proofs",
			ErrContractVersion, addr, have, ContractVersion)
	}
	s.version = v.Uint64()
	// VERSION is only what the contract says of itself: a look-alike
	// (one that lets anyone commit a batch, or a batch twice) can say it
	// as well. Readers trust what the chain holds because of the code
	// that wrote it, so the code is compared with the Settlement of that
	// version.
	if at, ok := sameRuntimeCode(code, creation); !ok {
		return fmt.Errorf("%w: the contract at %s says interface version %d but its code (%d bytes) is not that version's Settlement (first difference at byte %d): not Faregate's contract, or built from other source",
			ErrContractCode, addr, s.version, len(code), at)
	}
	return nil
}

// settlementV2 is the creation code of the Settlement contract of
// interface version 2 (an earlier build's), whose deployments this build
// still binds to.
//
//go:embed contracts/build/Settlement-v2.bin
var settlementV2 string

// ErrContractCode is returned when binding to a contract whose code is not
// this build's Settlement contract.
var ErrContractCode = errors.New("ledger: not this build's settlement contract")

// sameRuntimeCode says whether deployed is the runtime code of the creation
// code creation, as solc lays it out: the runtime is the creation code's
// tail, and each immutable (the admin) is a PUSH32 whose immediate the
// compiled runtime holds as zeros and the constructor fills in. Everything
// else must match byte for byte; otherwise it returns the first offset that
// differs.
func sameRuntimeCode(deployed, creation []byte) (int, bool) {
	if len(deployed) == 0 || len(deployed) > len(creation) {
		return 0, false
	}
	want := creation[len(creation)-len(deployed):]
	// The runtime ends in CBOR metadata (its length in the last two bytes),
	// which is data: the instruction walk stops before it.
	n := int(want[len(want)-2])<<8 | int(want[len(want)-1])
	codeEnd := len(want) - 2 - n
	if codeEnd < 0 {
		return 0, false
	}
	for pc := 0; pc < len(want); pc++ {
		op := want[pc]
		if deployed[pc] != op {
			return pc, false
		}
		if pc >= codeEnd || op < 0x60 || op > 0x7f { // not a PUSH1..PUSH32
			continue
		}
		size := int(op - 0x5f)
		end := min(pc+1+size, len(want))
		immutable := op == 0x7f && end == pc+33 && allZero(want[pc+1:end])
		if !immutable {
			for i := pc + 1; i < end; i++ {
				if deployed[i] != want[i] {
					return i, false
				}
			}
		}
		pc = end - 1
	}
	return 0, true
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// ContractVersion is the Settlement contract interface version this build
// reads and writes (the contract's VERSION).
const ContractVersion = 3

// ErrContractVersion is returned when binding to a contract whose
// interface version is not ContractVersion.
var ErrContractVersion = errors.New("ledger: settlement contract of another version")

func (s *settlement) transactOpts(ctx context.Context) *bind.TransactOpts {
	opts := bind.NewKeyedTransactor(s.key, s.chainID)
	opts.Context = ctx
	return opts
}

// deploy deploys a new Settlement contract signed by s.key, which becomes its
// admin, with clearingHouse as the account that commits batches, and binds to it.
func (s *settlement) deploy(ctx context.Context, clearingHouse common.Address) (common.Address, error) {
	if s.key == nil {
		return common.Address{}, fmt.Errorf("deploy settlement contract: %w", ErrReadOnly)
	}
	code := common.FromHex(settlementabi.SettlementMetaData.Bin)
	addr, tx, err := bind.DeployContract(s.transactOpts(ctx), code, s.eth, s.abi.PackConstructor(clearingHouse))
	if err != nil && lacksGasFunds(err) {
		return common.Address{}, fmt.Errorf("deploy settlement contract from %s: %w: %w", s.from.Hex(), ErrNoGasFunds, err)
	}
	if err != nil && nonceTaken(err) {
		return common.Address{}, fmt.Errorf("deploy settlement contract from %s: %w (the node said: %w)", s.from.Hex(), ErrNonceTaken, err)
	}
	if err != nil {
		return common.Address{}, fmt.Errorf("deploy settlement contract: %w", mapRevert(err))
	}
	rcpt, err := s.waitMined(ctx, tx)
	if err != nil {
		return common.Address{}, fmt.Errorf("deploy settlement contract: %w", err)
	}
	if rcpt.Status != types.ReceiptStatusSuccessful {
		return common.Address{}, fmt.Errorf("deploy settlement contract: transaction %s failed", rcpt.TxHash)
	}
	if s.afterMined != nil {
		if err := s.afterMined(ctx, rcpt.TxHash); err != nil {
			return common.Address{}, fmt.Errorf("deploy settlement contract: %w", err)
		}
	}
	if err := s.bindTo(ctx, addr); err != nil {
		return common.Address{}, fmt.Errorf("deploy settlement contract: %w", err)
	}
	s.setLogStart(rcpt.BlockNumber.Uint64())
	s.log.Info("ledger: deployed settlement contract", "address", addr, "admin", s.from, "clearingHouse", clearingHouse, "tx", rcpt.TxHash, "gas", rcpt.GasUsed)
	return addr, nil
}

// send sends a transaction calling the contract with data, waits until it is
// mined (and, on the embedded chain, durable) and returns its receipt. The
// node's gas estimate runs the call first, so a call the contract would refuse
// fails here, before anything is sent, with the contract's revert mapped to a
// sentinel error. afterSend, if set, runs between sending and waiting (fault
// injection). Callers hold s.txMu.
func (s *settlement) send(ctx context.Context, data []byte, afterSend func(common.Hash)) (Receipt, error) {
	if s.key == nil {
		return Receipt{}, fmt.Errorf("send: %w", ErrReadOnly)
	}
	opts := s.transactOpts(ctx)
	tx, err := bind.Transact(s.contract, opts, data)
	if min, ok := nodeMinTip(err); ok {
		// The node takes no transaction under a minimum tip above the
		// one it suggests (an outside re-check's geth, its minimum raised,
		// refused every commit at the suggested tip): pay the minimum, as
		// a tip, or as the gas price on a chain without base fees.
		if head, herr := s.eth.HeaderByNumber(ctx, nil); herr == nil && head.BaseFee == nil {
			opts.GasPrice = min
		} else {
			opts.GasTipCap = min
		}
		tx, err = bind.Transact(s.contract, opts, data)
	}
	if err != nil {
		if lacksGasFunds(err) {
			// The node's words name no role; the operator running the
			// command needs to know which account to fund.
			return Receipt{}, fmt.Errorf("send from %s: %w: %w", s.from.Hex(), ErrNoGasFunds, err)
		}
		if nonceTaken(err) {
			// Two processes signing with one key race for its nonce; the
			// node's words ("replacement transaction underpriced") do not
			// say so.
			return Receipt{}, fmt.Errorf("send from %s: %w (the node said: %w)", s.from.Hex(), ErrNonceTaken, err)
		}
		return Receipt{}, fmt.Errorf("send: %w", mapRevert(err))
	}
	if afterSend != nil {
		afterSend(tx.Hash())
	}
	rcpt, err := s.waitMined(ctx, tx)
	if err != nil {
		return Receipt{}, err
	}
	r := Receipt{TxHash: rcpt.TxHash, BlockNumber: rcpt.BlockNumber.Uint64(), GasUsed: rcpt.GasUsed}
	if rcpt.Status != types.ReceiptStatusSuccessful {
		return r, fmt.Errorf("transaction %s reverted in block %d: %w", rcpt.TxHash, r.BlockNumber, errReverted)
	}
	if s.afterMined != nil {
		if err := s.afterMined(ctx, rcpt.TxHash); err != nil {
			return r, fmt.Errorf("mined in block %d but not synced to disk: %w", r.BlockNumber, err)
		}
	}
	return r, nil
}

// MineWait is how long a sent transaction may go without a receipt before
// ErrNotMined: several blocks of a proof-of-authority chain.
var MineWait = 2 * time.Minute

// BumpAfter is how long a sent transaction may go unmined before it is sent
// again, same nonce and call, with fees a quarter higher (at least what the
// node now suggests): one whose fees a rising base fee or a node's minimum
// tip left behind would otherwise hold every later transaction of its key
// (their nonces queue behind it) until fees fell, and one a restarted node
// dropped is sent again. 0: never.
var BumpAfter = 30 * time.Second

// errReverted marks a mined transaction that reverted: receipts carry no
// revert data, so the caller works out why.
var errReverted = errors.New("reverted")

// waitMined polls for the receipt of tx, or of a replacement of it sent
// with higher fees after each BumpAfter: whichever is mined answers (the
// receipt names it). bind.WaitMined polls once a second; the embedded chain
// seals within milliseconds, so start at 1 ms and back off to pollMax.
//
// It gives up after MineWait with ErrNotMined: polling for ever would stop
// clearing's anchoring until clearing restarts.
func (s *settlement) waitMined(ctx context.Context, tx *types.Transaction) (*types.Receipt, error) {
	start := time.Now()
	deadline := start.Add(MineWait)
	nextBump := start.Add(BumpAfter)
	sent := []*types.Transaction{tx}
	var tried *types.Transaction // the last replacement the node refused
	delay := min(250*time.Microsecond, s.pollMax)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		// The newest first: once sent, a replacement is the likelier one.
		for i := len(sent) - 1; i >= 0; i-- {
			rcpt, err := s.eth.TransactionReceipt(ctx, sent[i].Hash())
			if err == nil {
				s.awaitHead(ctx, rcpt.BlockNumber.Uint64(), deadline)
				return rcpt, nil
			}
			// "Transaction indexing is in progress" (geth, while its indexer catches
			// up after start) means the same as not found yet.
			if !errors.Is(err, ethereum.NotFound) && !strings.Contains(err.Error(), "indexing is in progress") {
				return nil, fmt.Errorf("receipt of %s: %w", sent[i].Hash(), err)
			}
		}
		now := time.Now()
		if now.After(deadline) {
			if len(sent) > 1 {
				return nil, fmt.Errorf("%w: no receipt of %s, nor of the %d sent again in its place with higher fees (last %s), after %s", ErrNotMined, tx.Hash(), len(sent)-1, sent[len(sent)-1].Hash(), MineWait)
			}
			return nil, fmt.Errorf("%w: no receipt of %s after %s", ErrNotMined, tx.Hash(), MineWait)
		}
		if BumpAfter > 0 && s.key != nil && now.After(nextBump) {
			nextBump = now.Add(BumpAfter)
			pending := sent[len(sent)-1]
			base := pending
			if tried != nil {
				base = tried // each try dearer than the one refused before it
			}
			r, err := s.bump(ctx, base)
			if err != nil {
				// "nonce too low": one of those sent was mined meanwhile,
				// and the next poll finds it; else said, and tried again.
				s.log.Warn("ledger: a transaction not mined could not be sent again with higher fees", "tx", pending.Hash(), "nonce", pending.Nonce(), "tip_wei", r.GasTipCap(), "err", err)
				tried = r
				// A send that failed may have reached the node (a
				// timeout after the write): its receipt is polled too.
				if !slices.ContainsFunc(sent, func(t *types.Transaction) bool { return t.Hash() == r.Hash() }) {
					sent = append(sent, r)
				}
			} else {
				tried = nil
				sent = append(sent, r)
				s.log.Warn("ledger: transaction not mined; sent again with higher fees", "tx", pending.Hash(), "replacement", r.Hash(), "nonce", r.Nonce(),
					"after", now.Sub(start).Round(time.Millisecond), "tip_wei", r.GasTipCap(), "fee_cap_wei", r.GasFeeCap())
			}
		}
		timer.Reset(delay)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for transaction %s to be mined: %w", tx.Hash(), ctx.Err())
		case <-timer.C:
		}
		delay = min(delay*2, s.pollMax)
	}
}

// bump sends tx again, same nonce, call and gas, with its fees raised by a
// quarter (a node takes a replacement only a tenth dearer or more) or to
// what the node now suggests, whichever is higher, and to the node's
// minimum tip when it refuses it as under that. It returns the
// replacement it signed, sent or, with the node's refusal, not.
func (s *settlement) bump(ctx context.Context, tx *types.Transaction) (*types.Transaction, error) {
	raise := func(v *big.Int) *big.Int { // v * 5/4 + 1 (the 1 for a fee of 0)
		r := new(big.Int).Mul(v, big.NewInt(5))
		return r.Div(r, big.NewInt(4)).Add(r, big.NewInt(1))
	}
	var data types.TxData
	var atLeast func(min *big.Int) // raises data's tip to min, its cap alike
	switch tx.Type() {
	case types.DynamicFeeTxType:
		tip := raise(tx.GasTipCap())
		if sug, err := s.eth.SuggestGasTipCap(ctx); err == nil && sug.Cmp(tip) > 0 {
			tip = sug
		}
		feeCap := raise(tx.GasFeeCap())
		if head, err := s.eth.HeaderByNumber(ctx, nil); err == nil && head.BaseFee != nil {
			if f := new(big.Int).Add(new(big.Int).Mul(head.BaseFee, big.NewInt(2)), tip); f.Cmp(feeCap) > 0 {
				feeCap = f
			}
		}
		if feeCap.Cmp(tip) < 0 {
			feeCap = tip
		}
		dyn := &types.DynamicFeeTx{ChainID: s.chainID, Nonce: tx.Nonce(), To: tx.To(), Value: tx.Value(), Gas: tx.Gas(),
			GasTipCap: tip, GasFeeCap: feeCap, Data: tx.Data(), AccessList: tx.AccessList()}
		data = dyn
		atLeast = func(min *big.Int) {
			dyn.GasTipCap = min
			dyn.GasFeeCap = new(big.Int).Add(dyn.GasFeeCap, new(big.Int).Sub(min, tip))
		}
	case types.LegacyTxType:
		price := raise(tx.GasPrice())
		if sug, err := s.eth.SuggestGasPrice(ctx); err == nil && sug.Cmp(price) > 0 {
			price = sug
		}
		legacy := &types.LegacyTx{Nonce: tx.Nonce(), To: tx.To(), Value: tx.Value(), Gas: tx.Gas(), GasPrice: price, Data: tx.Data()}
		data = legacy
		atLeast = func(min *big.Int) { legacy.GasPrice = min }
	default:
		return tx, fmt.Errorf("transaction type %d: not replaced", tx.Type())
	}
	r, err := types.SignNewTx(s.key, types.LatestSignerForChainID(s.chainID), data)
	if err != nil {
		return tx, err
	}
	err = s.eth.SendTransaction(ctx, r)
	if min, ok := nodeMinTip(err); ok && min.Cmp(r.GasTipCap()) > 0 {
		atLeast(min)
		if r, err = types.SignNewTx(s.key, types.LatestSignerForChainID(s.chainID), data); err != nil {
			return tx, err
		}
		err = s.eth.SendTransaction(ctx, r)
	}
	return r, err
}

// minTipRefusal is how geth refuses a transaction under its minimum tip.
var minTipRefusal = regexp.MustCompile(`gas tip cap \d+, minimum needed (\d+)`)

// nodeMinTip is the minimum tip a node names in refusing a transaction as
// underpriced (geth's words; other nodes' are not read).
func nodeMinTip(err error) (*big.Int, bool) {
	if err == nil {
		return nil, false
	}
	m := minTipRefusal.FindStringSubmatch(err.Error())
	if m == nil {
		return nil, false
	}
	return new(big.Int).SetString(m[1], 10)
}

// HeadBlock is the number of the node's latest block.
func (s *settlement) HeadBlock(ctx context.Context) (uint64, error) {
	return s.eth.BlockNumber(ctx)
}

// awaitHead waits (until deadline) for the node's latest block to reach
// block: a node may serve a receipt before calls at "latest" see its block
// (CI once read a terminal back as unregistered right after registering
// it), and callers read their own writes next.
func (s *settlement) awaitHead(ctx context.Context, block uint64, deadline time.Time) {
	delay := min(250*time.Microsecond, s.pollMax)
	for {
		n, err := s.eth.BlockNumber(ctx)
		if (err == nil && n >= block) || time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, s.pollMax)
	}
}

func (s *settlement) callOpts(ctx context.Context) *bind.CallOpts {
	return &bind.CallOpts{Context: ctx, From: s.from}
}

func (s *settlement) nextBatchID(ctx context.Context) (uint64, error) {
	id, err := bind.Call(s.contract, s.callOpts(ctx), s.abi.PackNextBatchId(), s.abi.UnpackNextBatchId)
	if err != nil {
		return 0, fmt.Errorf("next batch id: %w", mapRevert(err))
	}
	return id, nil
}

func (s *settlement) commitBatch(ctx context.Context, b Batch) (Receipt, error) {
	e, err := encodeBatch(b)
	if err != nil {
		return Receipt{}, fmt.Errorf("commit batch %d: %w", b.ID, err)
	}
	s.txMu.Lock()
	defer s.txMu.Unlock()

	// Check the id first: it turns the common mistakes into clear errors without
	// spending gas, and the contract enforces the same rule if we race anyway.
	next, err := s.nextBatchID(ctx)
	if err != nil {
		return Receipt{}, fmt.Errorf("commit batch %d: %w", b.ID, err)
	}
	switch {
	case e.id < next:
		return Receipt{}, fmt.Errorf("commit batch %d: %w (next id is %d)", b.ID, ErrBatchExists, next)
	case e.id > next:
		return Receipt{}, fmt.Errorf("commit batch %d: %w (next id is %d)", b.ID, ErrBatchOutOfOrder, next)
	}

	nets := make([]*big.Int, len(e.nets))
	for i, n := range e.nets {
		nets[i] = big.NewInt(n)
	}
	data := s.abi.PackCommitBatch(e.id, e.root, e.eventCount, e.periodStart, e.periodEnd, e.operators, nets)
	rcpt, err := s.send(ctx, data, s.afterSend)
	if errors.Is(err, errReverted) {
		// The likely cause is another sender committing the same id between
		// our check and our transaction.
		if n, nerr := s.nextBatchID(ctx); nerr == nil && n > e.id {
			return Receipt{}, fmt.Errorf("commit batch %d: %w: %w", b.ID, err, ErrBatchExists)
		}
	}
	if err != nil {
		return Receipt{}, fmt.Errorf("commit batch %d: %w", b.ID, err)
	}
	return rcpt, nil
}

func (s *settlement) batch(ctx context.Context, id uint64) (Batch, error) {
	info, err := bind.Call(s.contract, s.callOpts(ctx), s.abi.PackBatch(id), s.abi.UnpackBatch)
	if err != nil {
		return Batch{}, fmt.Errorf("read batch %d: %w", id, mapRevert(err))
	}
	// Per-operator amounts are not kept in contract storage (that would cost
	// ~45k gas per operator per batch); they are in the committing block's logs,
	// whose block number the contract does store.
	block := new(big.Int).SetUint64(info.BlockNumber)
	idTopic := common.BigToHash(new(big.Int).SetUint64(id))
	logs, err := s.eth.FilterLogs(ctx, ethereum.FilterQuery{
		FromBlock: block,
		ToBlock:   block,
		Addresses: []common.Address{s.address},
		Topics: [][]common.Hash{
			{batchCommittedTopic, operatorSettledTopic},
			{idTopic},
		},
	})
	if err != nil {
		return Batch{}, fmt.Errorf("read batch %d: logs of block %d: %w", id, info.BlockNumber, err)
	}
	out := Batch{
		ID:          id,
		Root:        info.Root,
		EventCount:  info.EventCount,
		PeriodStart: unixUTC(info.PeriodStart),
		PeriodEnd:   unixUTC(info.PeriodEnd),
		BlockNumber: info.BlockNumber,
	}
	operatorCount := int64(-1)
	for i := range logs {
		l := &logs[i]
		if l.Removed {
			continue
		}
		switch l.Topics[0] {
		case batchCommittedTopic:
			ev, err := s.abi.UnpackBatchCommittedEvent(l)
			if err != nil {
				return Batch{}, fmt.Errorf("read batch %d: %w", id, err)
			}
			operatorCount = ev.OperatorCount.Int64()
			out.TxHash = l.TxHash
			if l.BlockTimestamp != 0 {
				out.CommittedAt = unixUTC(l.BlockTimestamp)
			}
		case operatorSettledTopic:
			ev, err := s.abi.UnpackOperatorSettledEvent(l)
			if err != nil {
				return Batch{}, fmt.Errorf("read batch %d: %w", id, err)
			}
			if !ev.Net.IsInt64() {
				return Batch{}, fmt.Errorf("read batch %d: net %s of %q does not fit int64", id, ev.Net, DecodeOperator(ev.Operator))
			}
			out.Amounts = append(out.Amounts, OperatorAmount{Operator: DecodeOperator(ev.Operator), Net: ev.Net.Int64()})
		}
	}
	// The logs must account for every operator: a node that pruned old logs
	// would otherwise return a batch with amounts silently missing.
	if operatorCount < 0 {
		return Batch{}, fmt.Errorf("read batch %d: block %d has no BatchCommitted log for it (%d operator logs): the node pruned its logs, or serves another chain", id, info.BlockNumber, len(out.Amounts))
	}
	if operatorCount != int64(len(out.Amounts)) {
		return Batch{}, fmt.Errorf("read batch %d: block %d has logs for %d operators, batch has %d (node pruned its logs?)",
			id, info.BlockNumber, len(out.Amounts), operatorCount)
	}
	if out.CommittedAt.IsZero() {
		// A node from before logs carried their block's time.
		h, err := s.eth.HeaderByNumber(ctx, block)
		if err != nil {
			return Batch{}, fmt.Errorf("read batch %d: header of block %d: %w", id, info.BlockNumber, err)
		}
		out.CommittedAt = unixUTC(h.Time)
	}
	return out, nil
}

func unixUTC(s uint64) time.Time {
	if s > math.MaxInt64 {
		s = math.MaxInt64
	}
	return time.Unix(int64(s), 0).UTC()
}

func (s *settlement) verifyInclusion(ctx context.Context, batchID uint64, value [32]byte, proof [][32]byte) (bool, error) {
	ok, err := bind.Call(s.contract, s.callOpts(ctx), s.abi.PackVerify(batchID, value, proof), s.abi.UnpackVerify)
	if err != nil {
		return false, fmt.Errorf("verify inclusion in batch %d: %w", batchID, mapRevert(err))
	}
	return ok, nil
}

// lacksGasFunds says whether a node refused a transaction because its
// account cannot pay for the gas: geth says "insufficient funds" for an
// empty account, and "gas required exceeds allowance (0)" when the
// balance covers no gas at the offered price (an account run low).
// nonceTaken says whether a node refused a transaction because another
// from the same account holds its nonce (geth's words; the node's error
// carries no code for it).
func nonceTaken(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"nonce too low", "replacement transaction underpriced", "already known", "replacement fee too low"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func lacksGasFunds(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "insufficient funds") || strings.Contains(msg, "gas required exceeds allowance (0)")
}

// setLogStart records the contract's deployment block, where log scans start.
func (s *settlement) setLogStart(block uint64) {
	s.logStartMu.Lock()
	defer s.logStartMu.Unlock()
	s.logStart, s.logStartKnown = block, true
}

// logStartBlock returns the first block the contract's logs can be in: its
// deployment block as recorded (at deploy, or in the embedded chain's
// ledger.json), else, when search is set, found by bisecting eth_getCode over
// the blocks up to head (a few dozen calls, once; it needs a node that keeps
// past state, as an archive node and the embedded chain do), else 0. A node
// that cannot answer for past blocks leaves it at 0 for good; a cancelled ctx
// leaves it unknown.
func (s *settlement) logStartBlock(ctx context.Context, head uint64, search bool) uint64 {
	s.logStartMu.Lock()
	defer s.logStartMu.Unlock()
	if s.logStartKnown || !search {
		return s.logStart
	}
	codeAt := func(block uint64) (bool, error) {
		code, err := s.eth.CodeAt(ctx, s.address, new(big.Int).SetUint64(block))
		return len(code) > 0, err
	}
	// Invariant: the contract has code at hi; none below lo.
	lo, hi := uint64(0), head
	if ok, err := codeAt(hi); err != nil || !ok {
		if err == nil || ctx.Err() == nil {
			s.logStartKnown = true
			s.log.Debug("ledger: deployment block not found; log scans start at block 0", "contract", s.address, "head", head, "err", err)
		}
		return 0
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		ok, err := codeAt(mid)
		if err != nil {
			if ctx.Err() == nil {
				s.logStartKnown = true
				s.log.Debug("ledger: the node does not serve past state; log scans start at block 0", "contract", s.address, "block", mid, "err", err)
			}
			return 0
		}
		if ok {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	s.logStart, s.logStartKnown = lo, true
	return lo
}
