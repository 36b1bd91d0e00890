package ledger_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"
)

// The Clique tests run real geth processes: go-ethereum v1.13.15, the last
// release whose geth still seals Clique proof-of-authority blocks (later ones
// only follow a beacon client). `make geth` installs it into the repository's
// bin/; FAREGATE_GETH points elsewhere.
const (
	gethVersion   = "1.13.15"
	gethEnv       = "FAREGATE_GETH"
	cliqueChainID = 4_242_001
	// cliquePeriod is the Clique block period in seconds. Period 0 (seal only
	// when transactions are pending) would be faster, but with several signers
	// it lets out-of-turn signers race for every block; 1 s is the smallest
	// period that keeps the signers in step.
	cliquePeriod = 1
	// cliqueGasLimit is the genesis block gas limit and the miners' target: a
	// 100-operator batch uses about 1M gas.
	cliqueGasLimit = 30_000_000
	cliquePassword = "faregate-clique-test"
)

// gethBinary returns the geth to run, failing the test when it is missing or
// is not v1.13.15.
func gethBinary(t testing.TB) string {
	t.Helper()
	path := os.Getenv(gethEnv)
	if path == "" {
		abs, err := filepath.Abs(filepath.Join("..", "bin", "geth"))
		if err != nil {
			t.Fatal(err)
		}
		path = abs
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("geth v%s not found at %s (%v): run `make geth` in the repository root (or set %s to a geth v%s binary)",
			gethVersion, path, err, gethEnv, gethVersion)
	}
	out, err := exec.Command(path, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", path, err, out)
	}
	if !strings.Contains(string(out), "\nVersion: "+gethVersion+"-") {
		t.Fatalf("%s is not geth v%s (the last release that seals Clique blocks): run `make geth`\n%s", path, gethVersion, out)
	}
	return path
}

// cliqueNet is a Clique proof-of-authority network of geth processes on
// loopback, one signer per node.
type cliqueNet struct {
	t     testing.TB
	geth  string
	dir   string
	nodes []*cliqueNode
	// funded is the key of a well-funded account that is no signer (the
	// clearing house, deployer and admin of the tests).
	funded *ecdsa.PrivateKey
	// signers are the signer addresses in Clique's order (ascending): block n
	// is in turn for signers[n % len(signers)].
	signers []common.Address
}

// cliqueNode is one geth process and the data dir it keeps across restarts.
type cliqueNode struct {
	net      *cliqueNet
	name     string
	dir      string
	logPath  string
	signer   common.Address
	p2pPort  int
	httpPort int
	authPort int

	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error
	rpc     *rpc.Client
	enode   string
}

// startCliqueNet writes a Clique genesis with n signers, initialises and
// starts one geth per signer, connects every pair, and returns once every node
// has imported a block sealed after the network formed.
func startCliqueNet(ctx context.Context, t testing.TB, n int) *cliqueNet {
	t.Helper()
	geth := gethBinary(t)
	cn := &cliqueNet{t: t, geth: geth, dir: t.TempDir()}
	t.Cleanup(cn.cleanup) // registered after TempDir: runs before its removal

	keys := make([]*ecdsa.PrivateKey, n)
	for i := range keys {
		keys[i] = mustKey(t)
		cn.signers = append(cn.signers, crypto.PubkeyToAddress(keys[i].PublicKey))
	}
	slices.SortFunc(cn.signers, func(a, b common.Address) int { return bytes.Compare(a[:], b[:]) })
	cn.funded = mustKey(t)

	genesisPath := filepath.Join(cn.dir, "genesis.json")
	if err := os.WriteFile(genesisPath, cliqueGenesis(cn.signers, crypto.PubkeyToAddress(cn.funded.PublicKey)), 0o644); err != nil {
		t.Fatal(err)
	}
	pwPath := filepath.Join(cn.dir, "password")
	if err := os.WriteFile(pwPath, []byte(cliquePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, key := range keys {
		nd := &cliqueNode{
			net:      cn,
			name:     fmt.Sprintf("node%d", i+1),
			signer:   crypto.PubkeyToAddress(key.PublicKey),
			p2pPort:  freePort(t),
			httpPort: freePort(t),
			authPort: freePort(t),
		}
		nd.dir = filepath.Join(cn.dir, nd.name)
		nd.logPath = filepath.Join(cn.dir, nd.name+".log")
		// The light scrypt parameters make unlocking at start cheap.
		ks := keystore.NewKeyStore(filepath.Join(nd.dir, "keystore"), keystore.LightScryptN, keystore.LightScryptP)
		if _, err := ks.ImportECDSA(key, cliquePassword); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.CommandContext(ctx, geth, "--datadir", nd.dir, "init", genesisPath).CombinedOutput(); err != nil {
			t.Fatalf("geth init %s: %v\n%s", nd.name, err, out)
		}
		cn.nodes = append(cn.nodes, nd)
	}
	for _, nd := range cn.nodes {
		nd.start(ctx)
	}
	cn.connect(ctx)
	// Every node has a block sealed after it joined: the signers are sealing.
	head := cn.nodes[0].blockNumber(ctx)
	cn.waitAllAt(ctx, head+2)
	return cn
}

// cliqueGenesis is a Clique genesis with every fork through London at block 0
// and nothing later: v1.13's Clique seals no Shanghai blocks (no withdrawals),
// and the contract is compiled for London (no PUSH0).
func cliqueGenesis(signers []common.Address, funded ...common.Address) []byte {
	extra := make([]byte, 32, 32+20*len(signers)+65)
	for _, s := range signers {
		extra = append(extra, s[:]...)
	}
	extra = append(extra, make([]byte, 65)...)
	alloc := map[string]any{}
	rich := new(big.Int).Lsh(big.NewInt(1), 100) // 2^100 wei: never runs out
	for _, a := range append(slices.Clone(signers), funded...) {
		alloc[a.Hex()] = map[string]string{"balance": hexutil.EncodeBig(rich)}
	}
	g := map[string]any{
		"config": map[string]any{
			"chainId":             cliqueChainID,
			"homesteadBlock":      0,
			"eip150Block":         0,
			"eip155Block":         0,
			"eip158Block":         0,
			"byzantiumBlock":      0,
			"constantinopleBlock": 0,
			"petersburgBlock":     0,
			"istanbulBlock":       0,
			"muirGlacierBlock":    0,
			"berlinBlock":         0,
			"londonBlock":         0,
			"arrowGlacierBlock":   0,
			"grayGlacierBlock":    0,
			"clique":              map[string]any{"period": cliquePeriod, "epoch": 30000},
		},
		"difficulty": "0x1",
		"gasLimit":   hexutil.EncodeUint64(cliqueGasLimit),
		"extradata":  hexutil.Encode(extra),
		"alloc":      alloc,
	}
	out, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		panic(err)
	}
	return out
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// writeKeyFile writes key in the hex form ledger.Dial reads.
func writeKeyFile(t testing.TB, dir string, key *ecdsa.PrivateKey) string {
	t.Helper()
	path := filepath.Join(dir, crypto.PubkeyToAddress(key.PublicKey).Hex()+".key")
	if err := os.WriteFile(path, []byte(hexutil.Encode(crypto.FromECDSA(key))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (nd *cliqueNode) url() string { return fmt.Sprintf("http://127.0.0.1:%d", nd.httpPort) }

func (nd *cliqueNode) running() bool {
	if nd.cmd == nil {
		return false
	}
	select {
	case <-nd.done:
		return false
	default:
		return true
	}
}

// start runs geth on the node's data dir (sealing with its signer key) and
// waits until its JSON-RPC answers. The ports were free when picked, but
// another test may take one before geth binds it: then start picks new ports
// and tries again.
func (nd *cliqueNode) start(ctx context.Context) {
	t := nd.net.t
	t.Helper()
	for attempt := 1; ; attempt++ {
		clash, err := nd.startOnce(ctx)
		if err == nil {
			break
		}
		if !clash || attempt == 3 {
			t.Fatalf("%v\n%s", err, nd.logTail(30))
		}
		t.Logf("%v; retrying on other ports", err)
		nd.p2pPort, nd.httpPort, nd.authPort = freePort(t), freePort(t), freePort(t)
	}
	var info struct {
		Enode string `json:"enode"`
	}
	nd.call(ctx, &info, "admin_nodeInfo")
	nd.enode = info.Enode
}

// startOnce starts geth and waits for its JSON-RPC; clash reports that geth
// exited because a port was taken.
func (nd *cliqueNode) startOnce(ctx context.Context) (clash bool, err error) {
	configPath := filepath.Join(nd.net.dir, nd.name+".toml")
	config := fmt.Sprintf("[Node.P2P]\nListenAddr = \"127.0.0.1:%d\"\nDialRatio = 1\n", nd.p2pPort)
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return false, err
	}
	args := []string{
		"--datadir", nd.dir,
		"--networkid", strconv.Itoa(cliqueChainID),
		"--syncmode", "full",
		// The config file holds what has no flag: the p2p listener on loopback
		// only (--port listens on every interface) and DialRatio 1, which
		// lets every peer slot be dialled (by default only a third may).
		"--config", configPath,
		// maxpeers is the number of other nodes: geth 1.13 starts a chain sync
		// only with min(5, maxpeers) peers, or after 10 s.
		"--nodiscover", "--nat", "extip:127.0.0.1", "--maxpeers", strconv.Itoa(len(nd.net.nodes) - 1),
		"--mine", "--miner.etherbase", nd.signer.Hex(),
		"--miner.gaslimit", strconv.Itoa(cliqueGasLimit),
		"--unlock", nd.signer.Hex(), "--password", filepath.Join(nd.net.dir, "password"), "--allow-insecure-unlock",
		"--http", "--http.addr", "127.0.0.1", "--http.port", strconv.Itoa(nd.httpPort),
		"--http.api", "eth,net,web3,admin,clique",
		"--authrpc.addr", "127.0.0.1", "--authrpc.port", strconv.Itoa(nd.authPort),
		"--ipcdisable",
		"--cache", "128",
		"--verbosity", "3",
	}
	logFile, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return false, err
	}
	logStart, _ := logFile.Seek(0, io.SeekEnd)
	fmt.Fprintf(logFile, "=== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), nd.net.geth, strings.Join(args, " "))
	cmd := exec.Command(nd.net.geth, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = gethSysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return false, fmt.Errorf("start geth %s: %w", nd.name, err)
	}
	nd.cmd, nd.done, nd.waitErr = cmd, make(chan struct{}), nil
	go func() {
		nd.waitErr = cmd.Wait()
		logFile.Close()
		close(nd.done)
	}()

	deadline := time.Now().Add(60 * time.Second)
	for {
		if !nd.running() {
			data, _ := os.ReadFile(nd.logPath)
			clash = int64(len(data)) > logStart && bytes.Contains(data[logStart:], []byte("address already in use"))
			return clash, fmt.Errorf("geth %s exited at start: %v", nd.name, nd.waitErr)
		}
		// Short tries: while geth starts, another process may hold the port.
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := rpc.DialContext(cctx, nd.url())
		if err == nil {
			var v string
			if err = c.CallContext(cctx, &v, "eth_blockNumber"); err == nil {
				cancel()
				nd.rpc = c
				return false, nil
			}
			c.Close()
		}
		cancel()
		if ctx.Err() != nil || time.Now().After(deadline) {
			nd.stop()
			return false, fmt.Errorf("geth %s: JSON-RPC at %s never answered: %v", nd.name, nd.url(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for geth to exit (SIGKILL after 30 s).
func (nd *cliqueNode) stop() error {
	if nd.rpc != nil {
		nd.rpc.Close()
		nd.rpc = nil
	}
	if !nd.running() {
		return nil
	}
	_ = nd.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-nd.done:
	case <-time.After(30 * time.Second):
		_ = nd.cmd.Process.Kill()
		<-nd.done
		return fmt.Errorf("geth %s ignored SIGTERM for 30 s; killed", nd.name)
	}
	var exit *exec.ExitError
	if nd.waitErr != nil && !errors.As(nd.waitErr, &exit) {
		return nd.waitErr
	}
	return nil
}

// cleanup stops every node, also after a failure, and shows the end of each
// node's log when the test failed.
func (cn *cliqueNet) cleanup() {
	for _, nd := range cn.nodes {
		if err := nd.stop(); err != nil {
			cn.t.Logf("%v", err)
		}
	}
	if cn.t.Failed() {
		for _, nd := range cn.nodes {
			cn.t.Logf("--- last lines of %s's log (%s):\n%s", nd.name, nd.logPath, nd.logTail(40))
		}
	}
}

func (nd *cliqueNode) logTail(n int) string {
	data, err := os.ReadFile(nd.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// call is a JSON-RPC call that fails the test on error.
func (nd *cliqueNode) call(ctx context.Context, result any, method string, args ...any) {
	t := nd.net.t
	t.Helper()
	if nd.rpc == nil {
		t.Fatalf("%s: %s on a stopped node", nd.name, method)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := nd.rpc.CallContext(cctx, result, method, args...); err != nil {
		t.Fatalf("%s: %s: %v", nd.name, method, err)
	}
}

func (nd *cliqueNode) blockNumber(ctx context.Context) uint64 {
	var n hexutil.Uint64
	nd.call(ctx, &n, "eth_blockNumber")
	return uint64(n)
}

// cliqueHeader is what the tests read of a block over JSON-RPC, as the node
// reports it (the node's own hash, not one recomputed by a newer client).
type cliqueHeader struct {
	Number     hexutil.Uint64 `json:"number"`
	Hash       common.Hash    `json:"hash"`
	Difficulty hexutil.Big    `json:"difficulty"`
	GasUsed    hexutil.Uint64 `json:"gasUsed"`
	Timestamp  hexutil.Uint64 `json:"timestamp"`
}

func (nd *cliqueNode) header(ctx context.Context, n uint64) cliqueHeader {
	nd.net.t.Helper()
	var h *cliqueHeader
	nd.call(ctx, &h, "eth_getBlockByNumber", hexutil.EncodeUint64(n), false)
	if h == nil {
		nd.net.t.Fatalf("%s has no block %d", nd.name, n)
	}
	return *h
}

// sealer is the signer that sealed block n (Clique's header coinbase is empty;
// the signer is recovered from the seal).
func (nd *cliqueNode) sealer(ctx context.Context, n uint64) common.Address {
	nd.net.t.Helper()
	var a common.Address
	nd.call(ctx, &a, "clique_getSigner", hexutil.EncodeUint64(n))
	return a
}

func (nd *cliqueNode) peerCount(ctx context.Context) int {
	var n hexutil.Uint64
	nd.call(ctx, &n, "net_peerCount")
	return int(n)
}

// connect peers every pair of running nodes. Every node trusts every other
// (a node at maxpeers would otherwise refuse an inbound connection from a
// restarted peer), but only one side of a pair dials (admin_addPeer, which
// geth keeps redialling): when both dial at once, geth drops both connections
// as duplicates and waits about 30 s before dialling again. Initially the later
// node of each pair dials; a node that was restarted (rejoin) dials all others,
// which, not dialling it themselves, just accept.
func (cn *cliqueNet) connect(ctx context.Context) {
	cn.t.Helper()
	running := cn.running()
	for i, a := range running {
		for _, b := range running[:i] {
			a.dial(ctx, b)
		}
	}
	cn.waitPeered(ctx)
}

// rejoin connects a restarted node to all the others.
func (cn *cliqueNet) rejoin(ctx context.Context, nd *cliqueNode) {
	cn.t.Helper()
	for _, b := range cn.running() {
		if b != nd {
			nd.dial(ctx, b)
		}
	}
	cn.waitPeered(ctx)
}

// dial makes a and b trust each other and a dial b.
func (a *cliqueNode) dial(ctx context.Context, b *cliqueNode) {
	var ok bool
	a.call(ctx, &ok, "admin_addTrustedPeer", b.enode)
	b.call(ctx, &ok, "admin_addTrustedPeer", a.enode)
	a.call(ctx, &ok, "admin_addPeer", b.enode)
}

func (cn *cliqueNet) waitPeered(ctx context.Context) {
	cn.t.Helper()
	running := cn.running()
	cn.waitFor(ctx, 30*time.Second, "every node peered with every other", func() bool {
		for _, nd := range running {
			if nd.peerCount(ctx) < len(running)-1 {
				return false
			}
		}
		return true
	})
}

func (cn *cliqueNet) running() []*cliqueNode {
	var out []*cliqueNode
	for _, nd := range cn.nodes {
		if nd.running() {
			out = append(out, nd)
		}
	}
	return out
}

// waitAllAt waits until every running node has block n, and then checks that
// they agree on its hash.
func (cn *cliqueNet) waitAllAt(ctx context.Context, n uint64) {
	cn.t.Helper()
	running := cn.running()
	cn.waitFor(ctx, 60*time.Second, fmt.Sprintf("every node at block %d", n), func() bool {
		for _, nd := range running {
			if nd.blockNumber(ctx) < n {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond every 100 ms until it holds, failing the test after
// timeout (or when ctx ends, or a node exits on its own).
func (cn *cliqueNet) waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) {
	cn.t.Helper()
	deadline := time.Now().Add(timeout)
	want := cn.running()
	for !cond() {
		for _, nd := range want {
			if !nd.running() {
				cn.t.Fatalf("waiting for %s: geth %s exited: %v", what, nd.name, nd.waitErr)
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			var heads []string
			for _, nd := range want {
				heads = append(heads, fmt.Sprintf("%s at %d with %d peers", nd.name, nd.blockNumber(ctx), nd.peerCount(ctx)))
			}
			cn.t.Fatalf("timed out waiting for %s (%s)", what, strings.Join(heads, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// inTurn returns the signer whose turn block n is.
func (cn *cliqueNet) inTurn(n uint64) common.Address {
	return cn.signers[n%uint64(len(cn.signers))]
}

// dirSize is the bytes under dir (the data dirs grow quickly; the tests report it).
func dirSize(dir string) int64 {
	var total int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			total += info.Size()
		}
		return nil
	})
	return total
}
