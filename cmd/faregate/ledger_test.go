package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/params"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
	"github.com/faregate/faregate/ledger/merkle"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// openZeppelinVerifier returns node and ledger/contracts/verify-proof.js,
// failing the test when node or @openzeppelin/merkle-tree is missing.
func openZeppelinVerifier(t *testing.T) (node, script string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed (%v): `make test` installs it and ledger/contracts/node_modules", err)
	}
	contracts, err := filepath.Abs(filepath.Join("..", "..", "ledger", "contracts"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(contracts, "node_modules", "@openzeppelin", "merkle-tree", "package.json")); err != nil {
		t.Fatalf("@openzeppelin/merkle-tree is not installed (%v): `make test` runs `npm ci --prefix ledger/contracts`", err)
	}
	return node, filepath.Join(contracts, "verify-proof.js")
}

// ozVerify pipes input to verify-proof.js and returns its output and exit code.
func ozVerify(t *testing.T, node, script string, input []byte, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(node, append([]string{script}, args...)...)
	cmd.Stdin = bytes.NewReader(input)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("run %s: %v", script, err)
	return "", -1
}

// TestLedgerAuditAndProve runs a small simulated city keeping its stores,
// audits them (embedded chain and JSON-RPC), proves events and verifies the
// proofs off chain, through the contract and with OpenZeppelin's own
// StandardMerkleTree.verify, then tampers with the chain and with proofs and
// tries bad invocations.
func TestLedgerAuditAndProve(t *testing.T) {
	node, script := openZeppelinVerifier(t)
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	t.Cleanup(func() { slog.SetDefault(prev) })

	dir := t.TempDir()
	out, err := runCLI(t, "simulate", "--data", dir, "--duration", "3s", "--rate", "60", "--period", "1s", "--http", "",
		"--operators", "2", "--stops", "1", "--gates", "1", "--passengers", "100", "--inject-bad", "1")
	if err != nil {
		t.Fatalf("simulate: %v\n%s", err, out)
	}
	for _, p := range []string{"registry.json", "chain/ledger.json", "clearing/store/MANIFEST"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("simulate --data did not keep %s: %v", p, err)
		}
	}

	out, err = runCLI(t, "ledger", "audit", "--data", dir)
	if err != nil || !strings.Contains(out, "audit clean:") || strings.Contains(out, "MISMATCH") ||
		!strings.Contains(out, "imbalance 0 (0.00 EUR)") {
		t.Fatalf("audit of a fresh run: %v\n%s", err, out)
	}
	// A registry in another currency would show the store's amounts as
	// money they are not (an outside review: a JPY registry, "clean").
	regJSON, err := os.ReadFile(filepath.Join(dir, "registry.json"))
	if err != nil {
		t.Fatal(err)
	}
	var reg map[string]any
	if err := json.Unmarshal(regJSON, &reg); err != nil || reg["currency"] != "EUR" {
		t.Fatalf("registry.json: %v, currency %v", err, reg["currency"])
	}
	reg["currency"] = "JPY"
	jpy := filepath.Join(t.TempDir(), "registry-jpy.json")
	if b, _ := json.Marshal(reg); os.WriteFile(jpy, b, 0o644) != nil {
		t.Fatal("write the JPY registry")
	}
	if out, err := runCLI(t, "ledger", "audit", "--data", dir, "--registry", jpy); err == nil ||
		!strings.Contains(err.Error(), "the store's amounts are in EUR") || !strings.Contains(err.Error(), "says JPY") || strings.Contains(out, "audit clean") {
		t.Errorf("audit with a registry in another currency: %v\n%s", err, out)
	}

	out, err = runCLI(t, "ledger", "audit", "--data", dir, "--json")
	var rep AuditOutput
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.AuditReport == nil {
		t.Fatalf("audit --json: %v\n%s", err, out)
	}
	if !rep.Clean() || rep.StoreBatches < 2 || uint64(rep.StoreBatches) != rep.ChainBatches || rep.EventsChecked == 0 ||
		rep.SignaturesChecked != rep.EventsChecked || rep.ProofsChecked != rep.StoreBatches || len(rep.Pending) != 0 {
		t.Errorf("audit report: %+v", rep)
	}
	// Money is {minor, decimal, currency}; roots are 0x hex.
	if rep.Journal.Transfers == 0 || rep.Journal.Imbalance != (clearing.Money{Minor: 0, Decimal: "0.00", Currency: "EUR"}) ||
		!strings.Contains(out, `"imbalance": {`) {
		t.Errorf("audit --json journal: %+v\n%s", rep.Journal, out)
	}
	for _, b := range rep.Batches {
		if !strings.HasPrefix(b.ComputedRoot, "0x") || !strings.HasPrefix(b.ChainRoot, "0x") {
			t.Errorf("batch %d roots %q %q, want 0x hex", b.ID, b.ComputedRoot, b.ChainRoot)
		}
	}

	// Events to prove: the first, one in the middle, the last.
	st, err := clearing.OpenStoreReadOnly(filepath.Join(dir, "clearing", "store"), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	ids, err := st.AppliedEventIDs()
	st.Close()
	if err != nil || len(ids) < 3 {
		t.Fatalf("applied events: %d, %v", len(ids), err)
	}
	var proofs []ProofOutput
	var raw bytes.Buffer
	for _, id := range []string{ids[0].String(), ids[len(ids)/2].String(), ids[len(ids)-1].String()} {
		out, err := runCLI(t, "ledger", "prove", "--event", id, "--data", dir, "--json")
		if err != nil {
			t.Fatalf("prove %s: %v\n%s", id, err, out)
		}
		var p ProofOutput
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("prove %s --json: %v\n%s", id, err, out)
		}
		if p.Event.ID != id || !p.VerifiedOffChain || !p.VerifiedOnChain || p.Root != p.ChainRoot || p.Root != p.Batch.Root ||
			p.Batch.ID == 0 || p.Batch.TxHash == "" || p.Event.Terminal == "" || p.Event.Signed == "" {
			t.Errorf("prove %s: %+v", id, p)
		}
		// The rider as the API shows it, never the raw card token.
		if p.Event.MediaToken != "" || !regexp.MustCompile(`^passenger/(card|face)/0x[0-9a-f]{32}$`).MatchString(p.Event.Rider) || strings.Contains(out, `"media_token"`) {
			t.Errorf("prove %s: media token %q, rider %q: want the pseudonymous rider only", id, p.Event.MediaToken, p.Event.Rider)
		}
		if err := proofVerdict(&p); err != nil {
			t.Errorf("prove %s: %v", id, err)
		}
		if len(p.Differences) != 0 {
			t.Errorf("prove %s: differences %v in a fresh run", id, p.Differences)
		}
		lying := p
		lying.Differences = []string{"the sealed record counts 9 events, the chain 10"}
		if err := proofVerdict(&lying); err == nil || !strings.Contains(err.Error(), "does not agree: the sealed record counts 9 events") {
			t.Errorf("a sealed record that is not the chain's: %v, want refused", err)
		} else {
			// The text ends with the verdict, not with the path's "yes".
			var text strings.Builder
			printProof(&text, &lying, err)
			if s := text.String(); !strings.HasSuffix(s, "result: NOT PROVEN (the reason follows on stderr)\n") || !strings.Contains(s, "DIFFERS: the sealed record counts 9 events") {
				t.Errorf("a sealed record that is not the chain's, as text:\n%s", s)
			}
		}
		lying = p
		lying.ChainRoot = "0x" + strings.Repeat("11", 32)
		if err := proofVerdict(&lying); err == nil || !strings.Contains(err.Error(), "differs from the chain's") {
			t.Errorf("a chain root that is not the store's: %v, want refused", err)
		}
		// Hashes and the signed bytes are 0x hex; the fare is money.
		for what, h := range map[string]string{"signed": p.Event.Signed, "root": p.Root, "value": p.Value, "tx": p.Batch.TxHash, "contract": p.Contract} {
			if !strings.HasPrefix(h, "0x") {
				t.Errorf("prove %s: %s %q, want 0x hex", id, what, h)
			}
		}
		if f := p.Event.Fare; f.Currency != "EUR" || f != clearing.MoneyOf(fare.Amount(f.Minor), "EUR") || !strings.Contains(out, `"fare": {`) {
			t.Errorf("prove %s: fare %+v, want money in EUR", id, f)
		}
		proofs = append(proofs, p)
		raw.WriteString(out)
	}
	out, err = runCLI(t, "ledger", "prove", "--event", "0x"+ids[0].String(), "--data", dir) // 0x taken too
	if err != nil || !strings.Contains(out, "verified off chain (ledger/merkle):                  yes") ||
		!strings.Contains(out, "verify view") || !strings.Contains(out, "event "+ids[0].String()) || !strings.Contains(out, "rider passenger/") ||
		!regexp.MustCompile(`fare -?[0-9]+ \(-?[0-9]+\.[0-9]{2} EUR\)`).MatchString(out) || !strings.Contains(out, "bytes (with --json; they hold the raw card token)") ||
		strings.Contains(out, strings.TrimPrefix(proofs[0].Event.Signed, "0x")) || strings.Contains(out, "DIFFERS") ||
		!strings.Contains(out, "result: proven: the event is a leaf of batch ") {
		t.Errorf("prove, text (no signed bytes: they hold the raw card token): %v\n%s", err, out)
	}

	// OpenZeppelin's library agrees, fed a JSON array or the CLI's output as is.
	arr, _ := json.Marshal(proofs)
	if got, code := ozVerify(t, node, script, arr); code != 0 || !strings.Contains(got, "3 verified, 0 failed") {
		t.Errorf("verify-proof.js on the proofs (exit %d):\n%s", code, got)
	}
	if got, code := ozVerify(t, node, script, raw.Bytes()); code != 0 || !strings.Contains(got, "3 verified, 0 failed") {
		t.Errorf("verify-proof.js on concatenated prove --json output (exit %d):\n%s", code, got)
	}
	tampered := []struct {
		name string
		edit func(p *ProofOutput)
		code int
	}{
		{"value", func(p *ProofOutput) { p.Value = "0x" + strings.Repeat("ab", 32) }, 1},
		{"root", func(p *ProofOutput) { p.Root = proofs[0].Root[:65] + "0" }, 1},
		{"proof order", func(p *ProofOutput) {
			if len(p.Proof) > 1 {
				p.Proof[0], p.Proof[1] = p.Proof[1], p.Proof[0]
			} else {
				p.Proof = append(p.Proof, p.Root)
			}
		}, 1},
		{"malformed value", func(p *ProofOutput) { p.Value = "0x1234" }, 2},
	}
	for _, tc := range tampered {
		p := proofs[1]
		p.Proof = append([]string(nil), p.Proof...)
		tc.edit(&p)
		if tc.name == "root" && p.Root == proofs[1].Root {
			p.Root = "0x" + strings.Repeat("00", 32)
		}
		b, _ := json.Marshal(p)
		if got, code := ozVerify(t, node, script, b); code != tc.code {
			t.Errorf("tampered %s: exit %d, want %d:\n%s", tc.name, code, tc.code, got)
		}
	}
	if got, code := ozVerify(t, node, script, []byte("not json")); code != 2 {
		t.Errorf("garbage input: exit %d:\n%s", code, got)
	}

	// Bad invocations: each fails with a message and creates nothing.
	empty := t.TempDir()
	missing := filepath.Join(empty, "missing")
	bad := []struct {
		name string
		args []string
		want string
	}{
		{"unknown event", []string{"ledger", "prove", "--data", dir, "--event", strings.Repeat("0", 32)}, "not in the clearing store"},
		{"malformed event id", []string{"ledger", "prove", "--data", dir, "--event", "xyz"}, "--event"},
		{"no event", []string{"ledger", "prove", "--data", dir}, "event"},
		{"a feed given that does not load", []string{"ledger", "prove", "--data", dir, "--event", "0x" + ids[0].String(), "--feed", missing}, "--feed " + missing + " does not load"},
		{"no chain named for status", []string{"ledger", "status"}, "say which chain"},
		{"missing data dir", []string{"ledger", "audit", "--data", missing}, "data directory"},
		{"data dir without store", []string{"ledger", "audit", "--data", empty}, "no clearing store"},
		{"store without chain", []string{"ledger", "audit", "--data", filepath.Join(dir, "clearing")}, "no embedded chain"},
		{"no source", []string{"ledger", "audit"}, "--data"},
		{"clearing-data without rpc", []string{"ledger", "audit", "--clearing-data", dir}, "--eth-rpc"},
		{"rpc without contract", []string{"ledger", "audit", "--data", dir, "--eth-rpc", "http://127.0.0.1:1", "--eth-key", "k"}, "--contract"},
		{"data and clearing-data", []string{"ledger", "audit", "--data", dir, "--clearing-data", dir}, "none of the others"},
		{"missing registry", []string{"ledger", "audit", "--data", dir, "--registry", filepath.Join(empty, "registry.json")}, "--registry"},
		{"store without registry", []string{"ledger", "audit", "--clearing-data", dir, "--eth-rpc", "http://127.0.0.1:1", "--eth-key", "k",
			"--contract", "0x" + strings.Repeat("00", 20), "--registry", missing}, "--registry"},
	}
	for _, b := range bad {
		out, err := runCLI(t, b.args...)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: err %v, want one mentioning %q\n%s", b.name, err, b.want, out)
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a failed audit created %s", missing)
	}
	if _, err := os.Stat(filepath.Join(dir, "clearing", "chain")); !os.IsNotExist(err) {
		t.Errorf("auditing a store without a chain created one")
	}

	// The same audit over JSON-RPC, then with a batch on chain that the
	// store never sealed.
	ctx := context.Background()
	emb, err := ledger.OpenEmbedded(ctx, filepath.Join(dir, "chain"), ledger.WithHTTP("127.0.0.1:0"), ledger.WithLogger(slog.Default()))
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	// The chain is open here: --data says which process holds it and how
	// to reach it instead.
	if out, err := runCLI(t, "ledger", "prove", "--event", ids[0].String(), "--data", dir); err == nil || !strings.Contains(err.Error(), "is open in another process") || !strings.Contains(err.Error(), "--eth-rpc URL") {
		t.Errorf("prove while the chain is open elsewhere: %v, want a hint\n%s", err, out)
	}
	// Reading needs no key: an auditor has none of the parties' keys.
	remote := []string{"ledger", "audit", "--clearing-data", dir, "--eth-rpc", emb.HTTPEndpoint(), "--contract", emb.ContractAddress().Hex()}
	if out, err := runCLI(t, remote...); err != nil || !strings.Contains(out, "audit clean:") {
		t.Errorf("audit over JSON-RPC without a key: %v\n%s", err, out)
	}
	if out, err := runCLI(t, append(remote, "--eth-key", filepath.Join(dir, "chain", "clearinghouse.key"))...); err != nil || !strings.Contains(out, "audit clean:") {
		t.Errorf("audit over JSON-RPC with a key: %v\n%s", err, out)
	}
	status := []string{"ledger", "status", "--eth-rpc", emb.HTTPEndpoint(), "--contract", emb.ContractAddress().Hex()}
	if out, err := runCLI(t, status...); err != nil || !strings.Contains(out, "clearing house 0x") || !strings.Contains(out, "batches committed:") {
		t.Errorf("status over JSON-RPC without a key: %v\n%s", err, out)
	}
	// A command that signs still wants the key, and says so before dialling.
	if out, err := runCLI(t, "ledger", "acknowledge", "--operator", "metro", "--batch", "1", "--eth-rpc", emb.HTTPEndpoint(), "--contract", emb.ContractAddress().Hex()); err == nil || !strings.Contains(err.Error(), "--eth-key") {
		t.Errorf("acknowledge over JSON-RPC without a key: %v, want the key asked for\n%s", err, out)
	}
	// verify-proof.js asks the contract itself for the anchored root: a
	// proof to a root anyone made up (a one-leaf tree of any value) passes
	// OpenZeppelin's check alone and fails there; a value that is not the
	// signed bytes' sha256 fails before.
	contract := emb.ContractAddress().Hex()
	if got, code := ozVerify(t, node, script, raw.Bytes(), "--rpc", emb.HTTPEndpoint(), "--contract", contract); code != 0 || !strings.Contains(got, "3 verified, 0 failed") ||
		!strings.Contains(got, "roots asked of the contract "+contract) || !strings.Contains(got, "at "+contract+")") {
		t.Errorf("verify-proof.js --rpc on real proofs (exit %d):\n%s", code, got)
	}
	madeUp := proofs[1]
	madeUp.Value = "0x" + strings.Repeat("de", 32)
	madeUp.Event.Signed = ""
	madeUp.Proof = []string{}
	fakeRoot := merkle.LeafHash([32]byte(bytes.Repeat([]byte{0xde}, 32)))
	madeUp.Root = "0x" + hex.EncodeToString(fakeRoot[:])
	b, _ := json.Marshal(madeUp)
	if got, code := ozVerify(t, node, script, b); code != 0 || !strings.Contains(got, "roots not checked against the chain") {
		t.Errorf("verify-proof.js without --rpc on a made-up root (exit %d): want it to pass and say the root was not checked:\n%s", code, got)
	}
	if got, code := ozVerify(t, node, script, b, "--rpc", emb.HTTPEndpoint(), "--contract", contract); code != 1 || !strings.Contains(got, "root on chain is not the one this proof reaches") {
		t.Errorf("verify-proof.js --rpc on a made-up root (exit %d):\n%s", code, got)
	}
	notSigned := proofs[1]
	notSigned.Event.Signed = proofs[0].Event.Signed
	b, _ = json.Marshal(notSigned)
	if got, code := ozVerify(t, node, script, b, "--rpc", emb.HTTPEndpoint(), "--contract", contract); code != 1 || !strings.Contains(got, "not sha256 of the signed bytes") {
		t.Errorf("verify-proof.js on another event's bytes (exit %d):\n%s", code, got)
	}
	if got, code := ozVerify(t, node, script, raw.Bytes(), "--rpc", "ftp://x", "--contract", contract); code != 2 || !strings.Contains(got, "--rpc") {
		t.Errorf("verify-proof.js --rpc ftp (exit %d):\n%s", code, got)
	}
	// The contract that confirms a root is the verifier's choice, never the
	// input's: a forged proof naming a contract that answers 1 to every call
	// must not pass (an outside test saw "1 verified", exit 0).
	keys, _ := filepath.Glob(filepath.Join(dir, "chain", "operators", "*.key"))
	if len(keys) == 0 {
		t.Fatalf("no operator keys in %s", filepath.Join(dir, "chain", "operators"))
	}
	yes := deployYesContract(t, emb.HTTPEndpoint(), keys[0])
	forgedProof := madeUp
	forgedProof.Contract = yes.Hex()
	b, _ = json.Marshal(forgedProof)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"--rpc without --contract", []string{"--rpc", emb.HTTPEndpoint()}, "--rpc needs --contract"},
		{"input naming another contract", []string{"--rpc", emb.HTTPEndpoint(), "--contract", contract}, "names contract " + yes.Hex()},
	} {
		if got, code := ozVerify(t, node, script, b, tc.args...); code != 2 || !strings.Contains(got, tc.want) || strings.Contains(got, "verified") {
			t.Errorf("verify-proof.js on a forged proof, %s (exit %d): want refused with %q:\n%s", tc.name, code, tc.want, got)
		}
	}
	next, err := emb.NextBatchID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last, err := emb.Batch(ctx, next-1)
	if err != nil {
		t.Fatal(err)
	}
	forged := ledger.Batch{ID: next, Root: [32]byte{0xfa}, EventCount: 1, PeriodStart: last.PeriodEnd, PeriodEnd: last.PeriodEnd.Add(time.Second),
		Amounts: []ledger.OperatorAmount{{Operator: last.Amounts[0].Operator, Net: 1}}}
	if _, err := emb.CommitBatch(ctx, forged); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, remote...)
	if err == nil || !strings.Contains(out, "MISMATCH batch") || !strings.Contains(out, "missing-in-store") {
		t.Errorf("audit over JSON-RPC with a forged batch: %v\n%s", err, out)
	}
	if err := emb.Close(); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "ledger", "audit", "--data", dir)
	// The batch, and the net it credited (+1 to one operator).
	if err == nil || !strings.Contains(err.Error(), "audit found 2 mismatch(es)") || !strings.Contains(out, "store record missing") ||
		!strings.Contains(out, "net of "+last.Amounts[0].Operator+"; store record missing; chain 1 (0.01 EUR)") {
		t.Errorf("audit with a forged batch: %v\n%s", err, out)
	}
	// Proofs of the real events still verify.
	if out, err := runCLI(t, "ledger", "prove", "--event", ids[0].String(), "--data", dir); err != nil {
		t.Errorf("prove after the forged batch: %v\n%s", err, out)
	}
}

// deployYesContract deploys, from the account of keyFile, a contract whose
// every call returns uint256 1, as verify(...) == true reads, and returns its
// address.
func deployYesContract(t *testing.T, rpcURL, keyFile string) common.Address {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eth, err := ethclient.DialContext(ctx, rpcURL)
	if err != nil {
		t.Fatal(err)
	}
	defer eth.Close()
	key, err := ledger.ReadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	chainID, err := eth.ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nonce, err := eth.PendingNonceAt(ctx, crypto.PubkeyToAddress(key.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	head, err := eth.HeaderByNumber(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Init code copying the 10-byte runtime PUSH1 1 PUSH1 0 MSTORE PUSH1 32
	// PUSH1 0 RETURN (return 1 to anything).
	code := common.FromHex("0x600a600c600039600a6000f3600160005260206000f3")
	feeCap := new(big.Int).Add(new(big.Int).Mul(head.BaseFee, big.NewInt(2)), big.NewInt(params.GWei))
	tx, err := types.SignNewTx(key, types.LatestSignerForChainID(chainID), &types.DynamicFeeTx{
		ChainID: chainID, Nonce: nonce, Gas: 100_000, GasTipCap: big.NewInt(params.GWei), GasFeeCap: feeCap, Data: code})
	if err != nil {
		t.Fatal(err)
	}
	if err := eth.SendTransaction(ctx, tx); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := eth.TransactionReceipt(ctx, tx.Hash())
		if err == nil {
			if r.Status != types.ReceiptStatusSuccessful {
				t.Fatalf("deploying the always-yes contract failed: %+v", r)
			}
			return r.ContractAddress
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the always-yes contract was not mined: %v", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// hardhatProxy is a JSON-RPC proxy in front of upstream that answers every
// go-ethereum revert (code 3, the revert bytes as data) as a node that gives
// them only in its message does: "VM Exception while processing transaction:
// reverted with an unrecognized custom error (return data: 0x...)" (the
// Hardhat node's message; issue 12). It counts the reverts it rewrote.
func hardhatProxy(t *testing.T, upstream string, rewrites *atomic.Int64) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp, err := http.Post(upstream, "application/json", bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		var m map[string]json.RawMessage
		var e struct {
			Code int    `json:"code"`
			Data string `json:"data"`
		}
		if json.Unmarshal(out, &m) == nil && m["error"] != nil && json.Unmarshal(m["error"], &e) == nil && e.Code == 3 && strings.HasPrefix(e.Data, "0x") {
			m["error"], _ = json.Marshal(map[string]any{"code": -32603,
				"message": "Error: VM Exception while processing transaction: reverted with an unrecognized custom error (return data: " + e.Data + ")"})
			out, _ = json.Marshal(m)
			rewrites.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(resp.StatusCode)
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestRegisterTerminalsThroughHardhatNode: `ledger register-terminals`
// against a node that reports reverts only in its error message still reads
// an unregistered terminal as "not registered yet", registers it, and on the
// second run finds it on chain; a refused command names the contract's
// error.
func TestRegisterTerminalsThroughHardhatNode(t *testing.T) {
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	ctx := t.Context()
	emb, err := ledger.OpenEmbedded(ctx, filepath.Join(t.TempDir(), "chain"), ledger.WithHTTP("127.0.0.1:0"), ledger.WithLogger(slog.Default()))
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	key, _ := crypto.GenerateKey()
	addr := crypto.PubkeyToAddress(key.PublicKey)
	if err := emb.Fund(ctx, addr, big.NewInt(params.Ether)); err != nil {
		t.Fatal(err)
	}
	if _, err := emb.Admin().AdmitOperator(ctx, "tram", addr); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "tram.key")
	if err := os.WriteFile(keyFile, []byte("0x"+hex.EncodeToString(crypto.FromECDSA(key))), 0o600); err != nil {
		t.Fatal(err)
	}
	var rewrites atomic.Int64
	rpcURL := hardhatProxy(t, emb.HTTPEndpoint(), &rewrites)
	chain := []string{"--eth-rpc", rpcURL, "--contract", emb.ContractAddress().Hex(), "--eth-key", keyFile}
	entry := provenTerminal(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)), "tram-7", "tram", "harbour")
	register := append([]string{"ledger", "register-terminals", "--operator", "tram", "--terminal", "tram-7", "--stop", "harbour",
		"--public-key", "0x" + hex.EncodeToString(entry.PublicKey), "--key-proof", "0x" + hex.EncodeToString(entry.KeyProof)}, chain...)
	out, err := runCLI(t, register...)
	if err != nil || !strings.Contains(out, "1 terminals registered for tram, 0 already on chain") {
		t.Fatalf("register-terminals through the proxy: %v\n%s", err, out)
	}
	out, err = runCLI(t, register...)
	if err != nil || !strings.Contains(out, "0 terminals registered for tram, 1 already on chain") {
		t.Fatalf("register-terminals again: %v\n%s", err, out)
	}
	// The stranger-key admin command is refused by the contract, named.
	out, err = runCLI(t, append([]string{"ledger", "admit", "--operator", "bus", "--account", addr.Hex()}, chain...)...)
	if !errors.Is(err, ledger.ErrNotAdmin) {
		t.Errorf("admit with an operator's key: %v, want ErrNotAdmin\n%s", err, out)
	}
	if rewrites.Load() < 2 {
		t.Errorf("the proxy rewrote %d reverts: the test did not exercise the Hardhat shape", rewrites.Load())
	}
	if got, err := emb.Terminal(ctx, "tram-7"); err != nil || got.Operator != "tram" {
		t.Errorf("terminal on chain: %+v, %v", got, err)
	}
	// Clearing started with an operator's key: refused at start, naming
	// the clearing house's account (it used to apply and confirm taps,
	// then fail every commit).
	reg := &clearing.Registry{Currency: "EUR", Operators: []clearing.OperatorConfig{{ID: "tram", FlatFare: 250}}}
	regFile := filepath.Join(t.TempDir(), "registry.json")
	if err := reg.Save(regFile); err != nil {
		t.Fatal(err)
	}
	_, house, err := emb.Roles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, append([]string{"clearing", "--data", filepath.Join(t.TempDir(), "clearing"), "--registry", regFile, "--http", "", "--nats-listen", "127.0.0.1:-1"}, chain...)...)
	if err == nil || !strings.Contains(err.Error(), "commits batches only from its clearing house "+house.Hex()) {
		t.Errorf("clearing with an operator's key: %v, want refused naming the clearing house\n%s", err, out)
	}
}

// TestProofRecordDifferences: each field of a batch's sealed record that
// differs from its events' root or the chain's batch is named.
func TestProofRecordDifferences(t *testing.T) {
	start := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	root := [32]byte{1}
	chain := ledger.Batch{ID: 4, Root: root, EventCount: 10, PeriodStart: start, PeriodEnd: start.Add(time.Minute), BlockNumber: 11, TxHash: [32]byte{7}}
	record := func() *clearing.BatchRecord {
		return &clearing.BatchRecord{ID: 4, Root: root, EventCount: 10, PeriodStart: start, PeriodEnd: start.Add(time.Minute)}
	}
	shown := BatchOutput{TxHash: hex32([32]byte{7}), BlockNumber: 11}
	for _, tc := range []struct {
		name  string
		edit  func(b *clearing.BatchRecord, o *BatchOutput)
		wants string
	}{
		{"as anchored", func(*clearing.BatchRecord, *BatchOutput) {}, ""},
		{"root", func(b *clearing.BatchRecord, _ *BatchOutput) { b.Root[0] = 9 }, "the sealed record's root 0x09"},
		{"count", func(b *clearing.BatchRecord, _ *BatchOutput) { b.EventCount = 9 }, "counts 9 events, the chain 10"},
		{"period", func(b *clearing.BatchRecord, _ *BatchOutput) { b.PeriodStart = start.Add(-time.Hour) }, "period 2026-12-03T09:00:00Z"},
		{"block", func(_ *clearing.BatchRecord, o *BatchOutput) { o.BlockNumber = 12 }, "block 12) is not the chain's"},
		{"tx", func(_ *clearing.BatchRecord, o *BatchOutput) { o.TxHash = hex32([32]byte{8}) }, "is not the chain's (tx 0x07"},
		{"no commit kept", func(_ *clearing.BatchRecord, o *BatchOutput) { o.TxHash, o.BlockNumber = "", 0 }, ""},
	} {
		b, o := record(), shown
		tc.edit(b, &o)
		got := strings.Join(recordDifferences(b, root, chain, o), "; ")
		if (tc.wants == "") != (got == "") || !strings.Contains(got, tc.wants) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.wants)
		}
	}
	// The same transaction in another block (the chain rewound and mined
	// it again): the chain's block is shown, noted, and nothing differs;
	// another transaction still differs.
	for _, tc := range []struct {
		name        string
		tx          string
		block       uint64
		wantRemined bool
		wantDiffers bool
	}{
		{"re-mined", hex32([32]byte{7}), 5, true, false},
		{"as anchored", hex32([32]byte{7}), 11, false, false},
		{"another transaction", hex32([32]byte{8}), 5, false, true},
	} {
		po := &ProofOutput{Batch: BatchOutput{TxHash: tc.tx, BlockNumber: tc.block}}
		po.followChainBlock(chain)
		differs := len(recordDifferences(record(), root, chain, po.Batch)) > 0
		if (po.Remined != "") != tc.wantRemined || differs != tc.wantDiffers || (tc.wantRemined && (po.Batch.BlockNumber != 11 || !strings.Contains(po.Remined, "block 5; the chain holds the same transaction in block 11"))) {
			t.Errorf("%s: remined %q, block %d, differs %v; want remined %v, differs %v", tc.name, po.Remined, po.Batch.BlockNumber, differs, tc.wantRemined, tc.wantDiffers)
		}
	}
}
