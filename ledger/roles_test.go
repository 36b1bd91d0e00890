package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"
)

// TestRoles checks every role-protected function against every wrong caller,
// and the registry, reconciliation and admission rules behind them.
func TestRoles(t *testing.T) {
	ctx := testContext(t)
	e := openTest(t, t.TempDir())
	admin := e.Admin()
	house := e.Account(e.key) // the clearing house's own key
	if house.Address() != e.ClearingHouse() {
		t.Fatalf("clearing house account %s, want %s", house.Address(), e.ClearingHouse())
	}
	metro, bus, stranger := fundedAccount(ctx, t, e), fundedAccount(ctx, t, e), fundedAccount(ctx, t, e)
	if _, err := admin.AdmitOperator(ctx, "metro", metro.Address()); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AdmitOperator(ctx, "bus", bus.Address()); err != nil {
		t.Fatal(err)
	}
	key := func(s string) (k [32]byte) { return sha256.Sum256([]byte(s)) }
	metroTerms := []TerminalRegistration{
		{ID: "metro-gate-0001", Stop: "central", PublicKey: key("t1"), KeyProof: testKeyProof},
		{ID: "metro-gate-0002-with-a-long-id-that-does-not-fit-in-thirty-two", Stop: "central", PublicKey: key("t2"), KeyProof: testKeyProof},
	}
	if _, err := metro.RegisterTerminals(ctx, metroTerms); err != nil {
		t.Fatal(err)
	}
	busTerms := []TerminalRegistration{{ID: "bus-17", Stop: "depot", PublicKey: key("t3"), KeyProof: testKeyProof}}
	if _, err := bus.RegisterTerminals(ctx, busTerms); err != nil {
		t.Fatal(err)
	}
	b1, _ := testBatch(1, 8, 2)
	b1.Amounts = []OperatorAmount{{Operator: "bus", Net: -250}, {Operator: "metro", Net: 250}}
	if _, err := e.CommitBatch(ctx, b1); err != nil {
		t.Fatal(err)
	}

	// Wrong callers: each must be refused by the contract with the role error.
	wrong := []struct {
		name string
		call func() error
		want error
	}{
		{"admitOperator by clearing house", func() error {
			_, err := house.AdmitOperator(ctx, "tram", stranger.Address())
			return err
		}, ErrNotAdmin},
		{"admitOperator by operator", func() error {
			_, err := metro.AdmitOperator(ctx, "tram", stranger.Address())
			return err
		}, ErrNotAdmin},
		{"setClearingHouse by clearing house", func() error {
			_, err := house.SetClearingHouse(ctx, stranger.Address())
			return err
		}, ErrNotAdmin},
		{"setClearingHouse by operator", func() error {
			_, err := metro.SetClearingHouse(ctx, metro.Address())
			return err
		}, ErrNotAdmin},
		{"commitBatch by admin", func() error {
			b, _ := testBatch(2, 4, 0)
			_, err := sendRaw(ctx, admin.s, b, 0)
			return err
		}, ErrNotClearingHouse},
		{"commitBatch by operator", func() error {
			b, _ := testBatch(2, 4, 0)
			_, err := sendRaw(ctx, metro.s, b, 0)
			return err
		}, ErrNotClearingHouse},
		{"registerTerminals by admin", func() error {
			_, err := admin.RegisterTerminals(ctx, []TerminalRegistration{{ID: "x", Stop: "s", PublicKey: key("x"), KeyProof: testKeyProof}})
			return err
		}, ErrNotOperator},
		{"registerTerminals by clearing house", func() error {
			_, err := house.RegisterTerminals(ctx, []TerminalRegistration{{ID: "x", Stop: "s", PublicKey: key("x"), KeyProof: testKeyProof}})
			return err
		}, ErrNotOperator},
		{"registerTerminals by stranger", func() error {
			_, err := stranger.RegisterTerminals(ctx, []TerminalRegistration{{ID: "x", Stop: "s", PublicKey: key("x"), KeyProof: testKeyProof}})
			return err
		}, ErrNotOperator},
		{"revokeTerminal by another operator", func() error {
			_, err := bus.RevokeTerminal(ctx, "metro-gate-0001")
			return err
		}, ErrNotTerminalOwner},
		{"revokeTerminal by admin", func() error {
			_, err := admin.RevokeTerminal(ctx, "metro-gate-0001")
			return err
		}, ErrNotOperator},
		{"acknowledgeBatch by clearing house", func() error {
			_, err := house.AcknowledgeBatch(ctx, 1)
			return err
		}, ErrNotOperator},
		{"disputeBatch by stranger", func() error {
			_, err := stranger.DisputeBatch(ctx, 1, key("why"))
			return err
		}, ErrNotOperator},
		// Rules behind the roles.
		{"terminal id registered twice", func() error {
			_, err := bus.RegisterTerminals(ctx, []TerminalRegistration{{ID: "metro-gate-0001", Stop: "depot", PublicKey: key("x"), KeyProof: testKeyProof}})
			return err
		}, ErrTerminalExists},
		{"terminal without key", func() error {
			_, err := bus.RegisterTerminals(ctx, []TerminalRegistration{{ID: "bus-18", Stop: "depot"}})
			return err
		}, ErrInvalidArgument},
		{"terminal without key proof", func() error {
			_, err := bus.RegisterTerminals(ctx, []TerminalRegistration{{ID: "bus-18", Stop: "depot", PublicKey: key("t18")}})
			return err
		}, ErrInvalidArgument},
		{"key proof not 64 bytes", func() error {
			_, err := bus.RegisterTerminals(ctx, []TerminalRegistration{{ID: "bus-18", Stop: "depot", PublicKey: key("t18"), KeyProof: testKeyProof[:63]}})
			return err
		}, ErrInvalidArgument},
		{"revoke unknown terminal", func() error {
			_, err := bus.RevokeTerminal(ctx, "bus-99")
			return err
		}, ErrUnknownTerminal},
		{"operator admitted twice", func() error {
			_, err := admin.AdmitOperator(ctx, "metro", stranger.Address())
			return err
		}, ErrOperatorExists},
		{"account admitted for a second operator", func() error {
			_, err := admin.AdmitOperator(ctx, "tram", metro.Address())
			return err
		}, ErrOperatorExists},
		{"batch with an operator never admitted", func() error {
			b, _ := testBatch(2, 4, 0)
			b.Amounts = []OperatorAmount{{Operator: "metro", Net: 5}, {Operator: "tram", Net: -5}}
			_, err := e.CommitBatch(ctx, b)
			return err
		}, ErrUnknownOperator},
		{"answer to a batch never committed", func() error {
			_, err := metro.AcknowledgeBatch(ctx, 7)
			return err
		}, ErrBatchNotFound},
		{"dispute without reason", func() error {
			_, err := metro.DisputeBatch(ctx, 1, [32]byte{})
			return err
		}, ErrInvalidArgument},
	}
	for _, w := range wrong {
		err := w.call()
		if !errors.Is(err, w.want) {
			t.Errorf("%s: %v, want %v", w.name, err, w.want)
			continue
		}
		t.Logf("%s: %v", w.name, err)
	}
	if next, err := e.NextBatchID(ctx); err != nil || next != 2 {
		t.Fatalf("NextBatchID after refused commits = %d, %v; want 2", next, err)
	}

	// Revocation: owner only, once.
	rr, err := metro.RevokeTerminal(ctx, "metro-gate-0001")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := metro.RevokeTerminal(ctx, "metro-gate-0001"); !errors.Is(err, ErrTerminalRevoked) {
		t.Fatalf("second revoke: %v, want ErrTerminalRevoked", err)
	}
	term, err := e.Terminal(ctx, "metro-gate-0001")
	if err != nil {
		t.Fatal(err)
	}
	if term.Operator != "metro" || term.RevokedBlock != rr.BlockNumber || term.PublicKey != key("t1") ||
		term.StopHash != crypto.Keccak256Hash([]byte("central")) {
		t.Fatalf("terminal after revoke: %+v (revoked in %d)", term, rr.BlockNumber)
	}

	// The registry as clearing reads it: every change in chain order.
	read, err := e.TerminalChanges(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	changes, next := read.Changes, read.Next
	// The read names the head it read to, as the chain has it.
	if h, err := e.BlockHash(ctx, next-1); err != nil || h != read.Head {
		t.Fatalf("block %d: %s, %v; the read found %s", next-1, h, err, read.Head)
	}
	if _, err := e.BlockHash(ctx, next+1000); !errors.Is(err, ErrBlockNotFound) {
		t.Fatalf("a block past the head: %v, want ErrBlockNotFound", err)
	}
	var got []string
	for _, c := range changes {
		s := c.Operator + " registers " + c.ID + " at " + c.Stop
		if c.Revoked {
			s = c.Operator + " revokes " + c.ID
		}
		got = append(got, s)
	}
	want := []string{
		"metro registers metro-gate-0001 at central",
		"metro registers " + metroTerms[1].ID + " at central",
		"bus registers bus-17 at depot",
		"metro revokes metro-gate-0001",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("terminal changes\n got %q\nwant %q", got, want)
	}
	// The key proof comes back as sent: the contract keeps it for clearing,
	// which alone can check it (ed25519).
	if changes[2].PublicKey != key("t3") || changes[3].Block != rr.BlockNumber || !bytes.Equal(changes[2].KeyProof, testKeyProof) {
		t.Fatalf("change details: %+v", changes)
	}
	if more, err := e.TerminalChanges(ctx, next); err != nil || len(more.Changes) != 0 || more.Next != next || more.Head != read.Head {
		t.Fatalf("changes after head: %+v, %v", more, err)
	}

	// Reconciliation: final answers; any admitted operator may answer.
	if _, err := metro.AcknowledgeBatch(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.DisputeBatch(ctx, 1, key("missing taps at depot")); err != nil {
		t.Fatal(err)
	}
	if _, err := metro.DisputeBatch(ctx, 1, key("changed my mind")); !errors.Is(err, ErrAlreadyAnswered) {
		t.Fatalf("second answer: %v, want ErrAlreadyAnswered", err)
	}
	for op, w := range map[string]Reconciliation{
		"metro": {Answer: Acknowledged},
		"bus":   {Answer: Disputed, ReasonHash: key("missing taps at depot")},
	} {
		r, err := e.Reconciliation(ctx, 1, op)
		if err != nil || r != w {
			t.Fatalf("reconciliation of %s = %+v, %v; want %+v", op, r, err, w)
		}
	}

	// Balances and the clearing-house handover.
	if info, err := e.Operator(ctx, "bus"); err != nil || info.Balance != -250 || info.Account != bus.Address() {
		t.Fatalf("bus = %+v, %v", info, err)
	}
	if _, err := e.Operator(ctx, "tram"); !errors.Is(err, ErrUnknownOperator) {
		t.Fatalf("unknown operator: %v", err)
	}
	if _, err := admin.SetClearingHouse(ctx, stranger.Address()); err != nil {
		t.Fatal(err)
	}
	b2, _ := testBatch(2, 4, 0)
	if _, err := e.CommitBatch(ctx, b2); !errors.Is(err, ErrNotClearingHouse) {
		t.Fatalf("old clearing house after handover: %v, want ErrNotClearingHouse", err)
	}
	if _, err := sendRaw(ctx, stranger.s, b2, 0); err != nil {
		t.Fatalf("new clearing house: %v", err)
	}
	if _, ch, _ := e.Roles(ctx); ch != stranger.Address() {
		t.Fatalf("clearing house %s, want %s", ch, stranger.Address())
	}
	if _, err := admin.SetClearingHouse(ctx, common.Address{}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("zero clearing house: %v", err)
	}
}

// TestReplaceOperatorAccount: an operator whose key is lost or stolen is
// moved by the admin to a new account (an outside review found no way to:
// a stolen key would register, revoke and answer for its operator for
// good). The old account then acts for no one; the new one acts for the
// operator over its terminals, balance and answers as they were.
func TestReplaceOperatorAccount(t *testing.T) {
	ctx := testContext(t)
	e := openTest(t, t.TempDir())
	admin := e.Admin()
	metro, bus, fresh, stranger := fundedAccount(ctx, t, e), fundedAccount(ctx, t, e), fundedAccount(ctx, t, e), fundedAccount(ctx, t, e)
	for op, a := range map[string]*Account{"metro": metro, "bus": bus} {
		if _, err := admin.AdmitOperator(ctx, op, a.Address()); err != nil {
			t.Fatal(err)
		}
	}
	key := func(s string) (k [32]byte) { return sha256.Sum256([]byte(s)) }
	if _, err := metro.RegisterTerminals(ctx, []TerminalRegistration{
		{ID: "m1", Stop: "central", PublicKey: key("m1"), KeyProof: testKeyProof},
		{ID: "m2", Stop: "central", PublicKey: key("m2"), KeyProof: testKeyProof},
	}); err != nil {
		t.Fatal(err)
	}
	b1, _ := testBatch(1, 8, 2)
	b1.Amounts = []OperatorAmount{{Operator: "bus", Net: -250}, {Operator: "metro", Net: 250}}
	if _, err := e.CommitBatch(ctx, b1); err != nil {
		t.Fatal(err)
	}

	for _, w := range []struct {
		name string
		call func() error
		want error
	}{
		{"by the operator itself", func() error { _, err := metro.ReplaceOperatorAccount(ctx, "metro", stranger.Address()); return err }, ErrNotAdmin},
		{"by the clearing house", func() error {
			_, err := e.Account(e.key).ReplaceOperatorAccount(ctx, "metro", stranger.Address())
			return err
		}, ErrNotAdmin},
		{"to another operator's account", func() error { _, err := admin.ReplaceOperatorAccount(ctx, "metro", bus.Address()); return err }, ErrOperatorExists},
		{"to its own account", func() error { _, err := admin.ReplaceOperatorAccount(ctx, "metro", metro.Address()); return err }, ErrOperatorExists},
		{"to no account", func() error { _, err := admin.ReplaceOperatorAccount(ctx, "metro", common.Address{}); return err }, ErrInvalidArgument},
		{"of an operator never admitted", func() error { _, err := admin.ReplaceOperatorAccount(ctx, "tram", fresh.Address()); return err }, ErrUnknownOperator},
		// Each role answers for itself only (a recheck moved metro onto the
		// clearing house's account, which then acknowledged as metro).
		{"to the clearing house's account", func() error { _, err := admin.ReplaceOperatorAccount(ctx, "metro", e.ClearingHouse()); return err }, ErrInvalidArgument},
		{"to the admin's account", func() error { _, err := admin.ReplaceOperatorAccount(ctx, "metro", admin.Address()); return err }, ErrInvalidArgument},
		{"admit the clearing house's account", func() error { _, err := admin.AdmitOperator(ctx, "tram", e.ClearingHouse()); return err }, ErrInvalidArgument},
		{"admit the admin's account", func() error { _, err := admin.AdmitOperator(ctx, "tram", admin.Address()); return err }, ErrInvalidArgument},
		{"clearing house handed to an operator's account", func() error { _, err := admin.SetClearingHouse(ctx, bus.Address()); return err }, ErrOperatorExists},
	} {
		if err := w.call(); !errors.Is(err, w.want) {
			t.Errorf("replace %s: %v, want %v", w.name, err, w.want)
		}
	}

	if _, err := admin.ReplaceOperatorAccount(ctx, "metro", fresh.Address()); err != nil {
		t.Fatal(err)
	}
	// The stolen key can do nothing more.
	for name, call := range map[string]func() error{
		"register": func() error {
			_, err := metro.RegisterTerminals(ctx, []TerminalRegistration{{ID: "m9", Stop: "central", PublicKey: key("m9"), KeyProof: testKeyProof}})
			return err
		},
		"revoke":      func() error { _, err := metro.RevokeTerminal(ctx, "m1"); return err },
		"acknowledge": func() error { _, err := metro.AcknowledgeBatch(ctx, 1); return err },
		"dispute":     func() error { _, err := metro.DisputeBatch(ctx, 1, key("why")); return err },
	} {
		if err := call(); !errors.Is(err, ErrNotOperator) {
			t.Errorf("%s with the replaced key: %v, want ErrNotOperator", name, err)
		}
	}
	// The new one acts for metro over what metro had.
	if info, err := e.Operator(ctx, "metro"); err != nil || info.Account != fresh.Address() || info.Balance != 250 {
		t.Fatalf("metro after the replacement: %+v, %v; want account %s, balance 250", info, err, fresh.Address())
	}
	if _, err := fresh.RevokeTerminal(ctx, "m1"); err != nil {
		t.Fatalf("revoke metro's terminal with the new key: %v", err)
	}
	if _, err := bus.RevokeTerminal(ctx, "m2"); !errors.Is(err, ErrNotTerminalOwner) {
		t.Fatalf("bus revoking metro's terminal: %v, want ErrNotTerminalOwner", err)
	}
	if _, err := fresh.AcknowledgeBatch(ctx, 1); err != nil {
		t.Fatalf("acknowledge with the new key: %v", err)
	}
	if r, err := e.Reconciliation(ctx, 1, "metro"); err != nil || r.Answer != Acknowledged {
		t.Fatalf("metro's answer: %+v, %v", r, err)
	}
	// The old account is no one's, so it may be admitted afresh (for
	// another operator); the new one is metro's and cannot be.
	if _, err := admin.AdmitOperator(ctx, "tram", fresh.Address()); !errors.Is(err, ErrOperatorExists) {
		t.Fatalf("admit metro's new account for tram: %v, want ErrOperatorExists", err)
	}
	if _, err := admin.AdmitOperator(ctx, "tram", metro.Address()); err != nil {
		t.Fatalf("admit the released account for tram: %v", err)
	}
}

// TestReplaceCustodialOperatorKey: on the embedded chain, whose dir keeps
// the operators' keys, a replacement makes a new key in the old one's
// place (the old kept beside it), funds it and moves the operator to it; a
// replacement stopped between its transaction and its files is finished
// by the next use of the operator's key (a recheck's clearing would not
// start again after the contract's move: the key file still held the old
// account, which it then refused as another's).
func TestReplaceCustodialOperatorKey(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	e := openTest(t, dir)
	metro, err := e.OperatorAccount(ctx, "metro")
	if err != nil {
		t.Fatal(err)
	}
	moved, r, err := e.ReplaceOperatorKey(ctx, "metro")
	if err != nil || r.TxHash == (common.Hash{}) {
		t.Fatalf("replace metro's key: %v (receipt %+v)", err, r)
	}
	if moved.Address() == metro.Address() {
		t.Fatal("the replacement kept the old account")
	}
	again, err := e.OperatorAccount(ctx, "metro")
	if err != nil || again.Address() != moved.Address() {
		t.Fatalf("metro's account after the replacement: %v, %v; want %s", again, err, moved.Address())
	}
	key := func(s string) (k [32]byte) { return sha256.Sum256([]byte(s)) }
	if _, err := moved.RegisterTerminals(ctx, []TerminalRegistration{{ID: "m1", Stop: "s", PublicKey: key("m1"), KeyProof: testKeyProof}}); err != nil {
		t.Fatalf("the new key, funded, registers: %v", err)
	}
	if _, err := metro.RevokeTerminal(ctx, "m1"); !errors.Is(err, ErrNotOperator) {
		t.Fatalf("the old key: %v, want ErrNotOperator", err)
	}
	kept, _ := filepath.Glob(filepath.Join(dir, operatorsDir, "metro.key.replaced-*"))
	if len(kept) != 1 {
		t.Fatalf("kept keys %v, want the old one", kept)
	}
	// Twice more at once: every replaced key is kept (two within a second
	// kept one over the other: an outside recheck).
	for range 2 {
		if _, _, err := e.ReplaceOperatorKey(ctx, "metro"); err != nil {
			t.Fatal(err)
		}
	}
	if kept, _ = filepath.Glob(filepath.Join(dir, operatorsDir, "metro.key.replaced-*")); len(kept) != 3 {
		t.Fatalf("kept keys after three replacements: %v, want 3", kept)
	}
	moved, err = e.OperatorAccount(ctx, "metro")
	if err != nil {
		t.Fatal(err)
	}

	// Stopped after the contract's move, before the files': the new key
	// is still KEY.new. The next use finishes it.
	keyFile := filepath.Join(dir, operatorsDir, "metro.key")
	next, err := loadOrCreateKey(keyFile + newKeySuffix)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Admin().ReplaceOperatorAccount(ctx, "metro", crypto.PubkeyToAddress(next.PublicKey)); err != nil {
		t.Fatal(err)
	}
	after, err := e.OperatorAccount(ctx, "metro")
	if err != nil || after.Address() != crypto.PubkeyToAddress(next.PublicKey) {
		t.Fatalf("metro after an interrupted replacement: %v, %v; want the new key's %s", after, err, crypto.PubkeyToAddress(next.PublicKey))
	}
	if _, err := os.Stat(keyFile + newKeySuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the new key left as %s: %v", keyFile+newKeySuffix, err)
	}
}

// TestUnderpricedTransactionRefused: a transaction whose tip is below what
// the embedded chain's miner includes is refused by its pool (it used to be
// taken, never mined, and the dev beacon sealed empty blocks without end);
// one at the floor is mined.
func TestUnderpricedTransactionRefused(t *testing.T) {
	e := openTest(t, t.TempDir())
	ctx := testContext(t)
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	from := crypto.PubkeyToAddress(key.PublicKey)
	if _, err := e.Admin().Transfer(ctx, from, big.NewInt(params.Ether)); err != nil {
		t.Fatal(err)
	}
	head, err := e.client.HeaderByNumber(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	send := func(nonce uint64, tip int64) error {
		feeCap := new(big.Int).Add(new(big.Int).Mul(head.BaseFee, big.NewInt(2)), big.NewInt(tip))
		tx, err := types.SignNewTx(key, types.LatestSignerForChainID(big.NewInt(EmbeddedChainID)),
			&types.DynamicFeeTx{ChainID: big.NewInt(EmbeddedChainID), Nonce: nonce, To: &from, Gas: params.TxGas, GasTipCap: big.NewInt(tip), GasFeeCap: feeCap})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.client.SendTransaction(ctx, tx); err != nil {
			return err
		}
		_, err = e.settlement.waitMined(ctx, tx)
		return err
	}
	// The chain at rest first: on a loaded machine the transfer's block
	// could be followed by another sealed while the refusal was asked (a
	// CI run saw blocks 12 then 14).
	settled := func() uint64 {
		t.Helper()
		last := uint64(0)
		for {
			n, err := e.client.BlockNumber(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == last {
				return n
			}
			last = n
			select {
			case <-ctx.Done():
				t.Fatalf("the chain kept sealing blocks: at %d", n)
			case <-time.After(300 * time.Millisecond):
			}
		}
	}
	before := settled()
	if err := send(0, 999_999); err == nil || !strings.Contains(err.Error(), "gas price below minimum") {
		t.Fatalf("a tip of 999,999 wei: %v, want refused (below the minimum)", err)
	}
	time.Sleep(300 * time.Millisecond)
	if after, err := e.client.BlockNumber(ctx); err != nil || after != before {
		t.Fatalf("blocks %d then %d (%v): the refused transaction sealed blocks", before, after, err)
	}
	if err := send(0, 1_000_000); err != nil {
		t.Fatalf("a tip of 1 mwei, the miner's floor: %v", err)
	}
}

// testKeyProof stands for a terminal's key proof: the contract checks only
// its length (ed25519 is checked by clearing, see clearing.CheckRegistration).
var testKeyProof = func() []byte {
	b := make([]byte, 64)
	for i := range b {
		b[i] = byte(i + 1)
	}
	return b
}()

// TestNonceTakenNamed: a transaction refused because another from the same
// account holds its nonce (two processes acting with one key: the other's
// just mined, or in flight) fails with ErrNonceTaken naming the account,
// not the node's bare "nonce too low" or "replacement transaction
// underpriced" (an outside test ran four acknowledgements with one key at
// once and got those words).
func TestNonceTakenNamed(t *testing.T) {
	ctx := testContext(t)
	e := openTest(t, t.TempDir(), WithHTTP("127.0.0.1:0"))
	key, _ := crypto.GenerateKey()
	metro := e.Account(key)
	if _, err := e.Admin().Transfer(ctx, metro.Address(), big.NewInt(params.Ether)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Admin().AdmitOperator(ctx, "metro", metro.Address()); err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 2; id++ {
		b, _ := testBatch(id, 2, 2)
		if _, err := e.CommitBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := metro.AcknowledgeBatch(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// The other process: it read the account's nonce (0) before the
	// acknowledgement above was mined.
	stale := rpcProxy(t, e.HTTPEndpoint(), func(body []byte) ([]byte, bool) {
		var q struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if json.Unmarshal(body, &q) == nil && q.Method == "eth_getTransactionCount" {
			return []byte(`{"jsonrpc":"2.0","id":` + string(q.ID) + `,"result":"0x0"}`), true
		}
		return nil, false
	}, nil)
	c, err := dialKey(ctx, stale, key, e.ContractAddress().Hex())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.KeyAccount().AcknowledgeBatch(ctx, 2)
	if !errors.Is(err, ErrNonceTaken) || !strings.Contains(err.Error(), metro.Address().Hex()) || !strings.Contains(err.Error(), "nonce too low") {
		t.Fatalf("acknowledge with a nonce another transaction took: %v; want ErrNonceTaken naming %s and the node's words", err, metro.Address().Hex())
	}
	// The same account through a node with its own count: the retry works.
	if _, err := metro.AcknowledgeBatch(ctx, 2); err != nil {
		t.Fatalf("retry: %v", err)
	}
	for _, msg := range []string{"replacement transaction underpriced", "nonce too low: address 0x1, tx: 0 state: 1", "already known", "Replacement fee too low"} {
		if !nonceTaken(errors.New(msg)) {
			t.Errorf("%q not taken for a nonce race", msg)
		}
	}
	if nonceTaken(errors.New("insufficient funds for gas * price + value")) {
		t.Error("insufficient funds taken for a nonce race")
	}
}

// fundedAccount is a new account on e with an ether from its admin.
func fundedAccount(ctx context.Context, t testing.TB, e *Embedded) *Account {
	t.Helper()
	key, _ := crypto.GenerateKey()
	a := e.Account(key)
	if _, err := e.Admin().Transfer(ctx, a.Address(), big.NewInt(params.Ether)); err != nil {
		t.Fatal(err)
	}
	return a
}
