package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/ledger"
)

// operators of the soak's registry; terminals alternate between them.
var operators = []clearing.OperatorConfig{{ID: "metro", Name: "Metro", FlatFare: 250}, {ID: "bus", Name: "Bus", FlatFare: 180}}

// terminalID is the id of terminal i (0-based): metro-1, bus-2, metro-3 ...
func terminalID(i int) string {
	return fmt.Sprintf("%s-%d", operators[i%len(operators)].ID, i+1)
}

// setup makes the keys and the registry, puts the registry on the embedded
// chain, writes the NATS configuration with `faregate nats config`, starts
// the three NATS nodes and clearing, then the terminals and their feeders.
func (h *harness) setup(ctx context.Context) error {
	var err error
	if h.dir, err = filepath.Abs(h.cfg.Dir); err != nil {
		return err
	}
	h.logs = h.path("logs")
	h.clearingDir = h.path("clearing")
	for _, d := range []string{h.logs, h.clearingDir, h.path("keys")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	h.http = &http.Client{Timeout: 3 * time.Second}
	h.stopFeeding = make(chan struct{})

	// Terminal keys and the registry (README "Running the parts by hand").
	reg := map[string]any{"currency": "EUR", "operators": operators}
	var entries []json.RawMessage
	for i := range h.cfg.Terminals {
		op := operators[i%len(operators)].ID
		t := &term{h: h, id: terminalID(i), operator: op, stop: fmt.Sprintf("S%d", i+1)}
		t.key = h.path("keys", t.id+".key")
		t.data = h.path("terminals", t.id)
		out, err := run(ctx, h.cfg.Env, h.cfg.Faregate, "terminal", "keygen", "--key", t.key, "--id", t.id, "--operator", op, "--stop", t.stop)
		if err != nil {
			return err
		}
		var entry json.RawMessage
		if err := json.NewDecoder(bytes.NewReader(out)).Decode(&entry); err != nil {
			return fmt.Errorf("terminal keygen %s: %w in %q", t.id, err, out)
		}
		entries = append(entries, entry)
		h.terms = append(h.terms, t)
	}
	reg["terminals"] = entries
	b, err := json.MarshalIndent(reg, "", "  ")
	if err != nil {
		return err
	}
	h.registry = h.path("registry.json")
	if err := os.WriteFile(h.registry, b, 0o644); err != nil {
		return err
	}

	// The embedded chain with the registry on it, so that `faregate nats
	// config` reads the terminals from the chain as an operator would.
	r, err := clearing.LoadRegistry(h.registry)
	if err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	chain, err := ledger.OpenEmbedded(ctx, filepath.Join(h.clearingDir, "chain"), ledger.WithLogger(quiet))
	if err != nil {
		return fmt.Errorf("embedded chain: %w", err)
	}
	err = clearing.PublishRegistry(ctx, chain, r)
	h.contract = chain.ContractAddress().Hex()
	chain.Close()
	if err != nil {
		return err
	}
	h.chainDir = filepath.Join(h.clearingDir, "chain")
	h.chainProcess = slices.Contains(h.cfg.Kinds, RestartChain)
	h.seed = h.path("keys", "clearing.nk")
	if err := h.makeVerifierKeys(ctx); err != nil {
		return err
	}
	auth := h.path("nats-auth.conf")
	if _, err := run(ctx, h.cfg.Env, h.cfg.Faregate, append([]string{"nats", "config", "--data", h.clearingDir, "--clearing-seed", h.seed, "--out", auth},
		h.verifierFlags()...)...); err != nil {
		return err
	}
	authConf, err := os.ReadFile(auth)
	if err != nil {
		return err
	}
	if err := h.startCluster(ctx, string(authConf)); err != nil {
		return err
	}

	// Clearing's confirmation key (terminals are provisioned with it) and
	// an auditor token for the API.
	out, err := run(ctx, h.cfg.Env, h.cfg.Faregate, "clearing", "key", "--data", h.clearingDir)
	if err != nil {
		return err
	}
	h.confirmKey = strings.TrimSpace(string(out))
	out, err = run(ctx, h.cfg.Env, h.cfg.Faregate, "clearing", "token", "issue", "--data", h.clearingDir, "--role", "auditor", "--name", "chaos")
	if err != nil {
		return err
	}
	h.token = strings.TrimSpace(string(out))
	port, err := h.freePort()
	if err != nil {
		return err
	}
	h.httpAddr = fmt.Sprintf("127.0.0.1:%d", port)
	if h.chainProcess {
		if port, err = h.freePort(); err != nil {
			return err
		}
		h.chainAddr = fmt.Sprintf("127.0.0.1:%d", port)
		h.ethKey = filepath.Join(h.chainDir, "clearinghouse.key")
		if err := h.startChain(ctx); err != nil {
			return err
		}
	} else if h.cfg.FirstPort != 0 {
		// Clearing's embedded chain serves its JSON-RPC in the range too.
		if port, err = h.freePort(); err != nil {
			return err
		}
		h.embeddedChainAddr = fmt.Sprintf("127.0.0.1:%d", port)
	}
	if err := h.startClearing(ctx); err != nil {
		return err
	}
	for _, v := range h.verifiers {
		if err := h.startVerifier(ctx, v); err != nil {
			return err
		}
	}

	for _, t := range h.terms {
		for _, u := range h.natsURLs {
			ln, err := h.listen()
			if err != nil {
				return err
			}
			px := newProxy(ln, strings.TrimPrefix(u, "nats://"))
			t.proxies = append(t.proxies, px)
		}
		if err := t.start(); err != nil {
			return err
		}
	}
	for _, t := range h.terms {
		h.feeders.Add(1)
		go t.feed(h.cfg.Rate)
	}
	chainDesc := "its embedded chain"
	if h.chainProcess {
		chainDesc = "a chain node at " + h.chainAddr
	}
	verifiers := "clearing verifies"
	if len(h.verifiers) > 0 {
		var ps []string
		for _, v := range h.verifiers {
			ps = append(ps, fmt.Sprintf("p%d: %s", v.partition, strings.Join(v.terminals, ",")))
		}
		verifiers = fmt.Sprintf("%d verifier partitions (%s)", len(h.verifiers), strings.Join(ps, "; "))
	}
	h.logf("setup done: 3 NATS nodes, clearing (API %s) on %s, %s, %d terminals at %.1f taps/s each", h.httpAddr, chainDesc, verifiers, len(h.terms), h.cfg.Rate)
	return nil
}

// startCluster writes the three nodes' configurations (the authorization
// from `faregate nats config`, JetStream, routes; no_advertise, so that
// terminals only know the proxies they were given) and starts them.
func (h *harness) startCluster(ctx context.Context, auth string) error {
	const n = 3
	client, route := make([]int, n), make([]int, n)
	for i := range n {
		var err error
		if client[i], err = h.freePort(); err != nil {
			return err
		}
		if route[i], err = h.freePort(); err != nil {
			return err
		}
	}
	for i := range n {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", route[j]))
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		// A cluster name of its own, so that another cluster on this host
		// (a test in another package) reusing a freed port cannot route in.
		clusterName := fmt.Sprintf("faregate-chaos-%d-%d", os.Getpid(), client[0])
		conf := fmt.Sprintf("server_name: %s\nlisten: \"127.0.0.1:%d\"\njetstream {\n  store_dir: %q\n}\n"+
			"cluster {\n  name: %s\n  listen: \"127.0.0.1:%d\"\n  no_advertise: true\n  routes: [%s]\n}\n",
			name, client[i], h.path("nats", name), clusterName, route[i], strings.Join(routes, ", ")) + auth
		path := h.path(name + ".conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			return err
		}
		h.natsConfs = append(h.natsConfs, path)
		h.natsNames = append(h.natsNames, name)
		h.natsURLs = append(h.natsURLs, fmt.Sprintf("nats://127.0.0.1:%d", client[i]))
	}
	h.nodes = make([]*proc, n)
	for i := range n {
		if err := h.startNode(i); err != nil {
			return err
		}
	}
	for i := range n {
		if err := h.nodes[i].waitLog(ctx, "Server is ready", 30*time.Second); err != nil {
			return err
		}
	}
	nc, js, err := h.admin()
	if err != nil {
		return err
	}
	defer nc.Close()
	if !waitUntil(ctx, 60*time.Second, func() bool {
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := js.AccountInfo(c)
		return err == nil
	}) {
		return fmt.Errorf("the NATS cluster's JetStream has no meta leader after 60s")
	}
	h.logf("NATS cluster up: %s", strings.Join(h.natsURLs, ","))
	return nil
}

func (h *harness) startNode(i int) error {
	p, err := startProc(h.natsNames[i], filepath.Join(h.logs, h.natsNames[i]+".log"), h.cfg.Env, nil, nil, h.cfg.NATSServer, "-c", h.natsConfs[i])
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.nodes[i] = p
	h.mu.Unlock()
	return nil
}

// admin connects to the cluster as clearing's NATS user.
func (h *harness) admin() (*nats.Conn, jetstream.JetStream, error) {
	opt, err := nats.NkeyOptionFromSeed(h.seed)
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(strings.Join(h.natsURLs, ","), opt, nats.Name("faregate-chaos"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// streamLeader is the server name of stream's leader.
func (h *harness) streamLeader(ctx context.Context, stream string) (string, *jetstream.ClusterInfo, error) {
	nc, js, err := h.admin()
	if err != nil {
		return "", nil, err
	}
	defer nc.Close()
	c, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := js.Stream(c, stream)
	if err != nil {
		return "", nil, err
	}
	ci := st.CachedInfo().Cluster
	if ci == nil || ci.Leader == "" {
		return "", ci, fmt.Errorf("stream %s has no leader", stream)
	}
	return ci.Leader, ci, nil
}

// startChain starts the chain node (`faregate chaos chain-node`) on the
// embedded chain's dir and waits until it serves.
func (h *harness) startChain(ctx context.Context) error {
	p, err := startProc("chain", filepath.Join(h.logs, "chain.log"), h.cfg.Env, nil, nil, h.cfg.Faregate,
		"chaos", "chain-node", "--dir", h.chainDir, "--http", h.chainAddr)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.chain = p
	h.mu.Unlock()
	return p.waitLog(ctx, "chain node serving", 90*time.Second)
}

// ethRPC is the chain node's JSON-RPC URL.
func (h *harness) ethRPC() string { return "http://" + h.chainAddr }

// startClearing starts `faregate clearing` on the cluster and waits until
// it answers /readyz.
func (h *harness) startClearing(ctx context.Context) error {
	h.clearingStarts++
	args := []string{"clearing", "--data", h.clearingDir, "--registry", h.registry, "--nats", strings.Join(h.natsURLs, ","),
		"--nats-seed", h.seed, "--http", h.httpAddr, "--period", h.cfg.Period.String()}
	args = append(args, h.verifierFlags()...)
	if h.chainProcess {
		args = append(args, "--eth-rpc", h.ethRPC(), "--eth-key", h.ethKey, "--contract", h.contract)
	} else if h.embeddedChainAddr != "" {
		args = append(args, "--chain-rpc-listen", h.embeddedChainAddr)
	}
	p, err := startProc("clearing", filepath.Join(h.logs, "clearing.log"), h.cfg.Env, nil, nil, h.cfg.Faregate, args...)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.clearing = p
	h.mu.Unlock()
	ready := waitUntil(ctx, 90*time.Second, func() bool {
		if p.exited() {
			return true
		}
		resp, err := h.http.Get("http://" + h.httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if p.exited() {
		return fmt.Errorf("clearing exited at start (%v):\n%s", p.err, p.log.tail(3000))
	}
	if !ready {
		return fmt.Errorf("clearing not ready within 90s:\n%s", p.log.tail(3000))
	}
	return nil
}
