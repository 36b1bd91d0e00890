package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/ledger"
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
func ozVerify(t *testing.T, node, script string, input []byte) (string, int) {
	t.Helper()
	cmd := exec.Command(node, script)
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
	if err != nil || !strings.Contains(out, "audit clean:") || strings.Contains(out, "MISMATCH") {
		t.Fatalf("audit of a fresh run: %v\n%s", err, out)
	}
	out, err = runCLI(t, "ledger", "audit", "--data", dir, "--json")
	var rep clearing.AuditReport
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("audit --json: %v\n%s", err, out)
	}
	if !rep.Clean() || rep.StoreBatches < 2 || uint64(rep.StoreBatches) != rep.ChainBatches || rep.EventsChecked == 0 ||
		rep.SignaturesChecked != rep.EventsChecked || rep.ProofsChecked != rep.StoreBatches || len(rep.Pending) != 0 {
		t.Errorf("audit report: %+v", rep)
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
		proofs = append(proofs, p)
		raw.WriteString(out)
	}
	out, err = runCLI(t, "ledger", "prove", "--event", ids[0].String(), "--data", dir)
	if err != nil || !strings.Contains(out, "verified off chain (ledger/merkle):                  yes") ||
		!strings.Contains(out, "verify view") || !strings.Contains(out, "event "+ids[0].String()) {
		t.Errorf("prove, text: %v\n%s", err, out)
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
		{"missing data dir", []string{"ledger", "audit", "--data", missing}, "data directory"},
		{"data dir without store", []string{"ledger", "audit", "--data", empty}, "no clearing store"},
		{"store without chain", []string{"ledger", "audit", "--data", filepath.Join(dir, "clearing")}, "no embedded chain"},
		{"no source", []string{"ledger", "audit"}, "--data"},
		{"clearing-data without rpc", []string{"ledger", "audit", "--clearing-data", dir}, "--eth-rpc"},
		{"rpc without contract", []string{"ledger", "audit", "--data", dir, "--eth-rpc", "http://127.0.0.1:1", "--eth-key", "k"}, "--contract"},
		{"data and clearing-data", []string{"ledger", "audit", "--data", dir, "--clearing-data", dir}, "none of the others"},
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
	remote := []string{"ledger", "audit", "--clearing-data", dir, "--eth-rpc", emb.HTTPEndpoint(),
		"--contract", emb.ContractAddress().Hex(), "--eth-key", filepath.Join(dir, "chain", "clearinghouse.key")}
	if out, err := runCLI(t, remote...); err != nil || !strings.Contains(out, "audit clean:") {
		t.Errorf("audit over JSON-RPC: %v\n%s", err, out)
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
	if err == nil || !strings.Contains(err.Error(), "audit found 1 mismatch(es)") || !strings.Contains(out, "store record missing") {
		t.Errorf("audit with a forged batch: %v\n%s", err, out)
	}
	// Proofs of the real events still verify.
	if out, err := runCLI(t, "ledger", "prove", "--event", ids[0].String(), "--data", dir); err != nil {
		t.Errorf("prove after the forged batch: %v\n%s", err, out)
	}
}
