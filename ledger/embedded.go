package ledger

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/rawdb"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/eth"
	"github.com/ethereum/go-ethereum/eth/catalyst"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/eth/filters"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/ethdb"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/p2p"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/faregate/faregate/fare"
)

// EmbeddedChainID is the chain id of every embedded chain. It is fixed (and part
// of the pinned genesis) so that transactions and data dirs stay valid across
// versions; it is not a public network's id.
const EmbeddedChainID = 1178686021 // "FARE" in ASCII

// EmbeddedGasLimit is the embedded chain's block gas limit: generous, so a
// batch with thousands of operators still fits one block.
const EmbeddedGasLimit = 100_000_000

// Files in an embedded chain's data dir.
const (
	keyFileName   = "clearinghouse.key" // hex secp256k1 key of the clearing house
	adminKeyName  = "admin.key"         // hex secp256k1 key of the contract's admin (the deployer)
	operatorsDir  = "operators"         // operators' keys, when the embedded chain holds them (dev mode)
	stateFileName = "ledger.json"       // deployed contract address
	chainDirName  = "chain"             // the node's own data dir
)

// EmbeddedChainConfig returns the embedded chain's rules, pinned explicitly:
// every fork through Prague active from genesis, nothing later. The dev-mode
// default (params.AllDevChainProtocolChanges) also enables forks that are not
// live on public chains yet, with different gas costs and a 16.7M per-transaction
// gas cap; pinning keeps gas figures comparable with mainnet and keeps old data
// dirs valid when go-ethereum adds forks.
func EmbeddedChainConfig() *params.ChainConfig {
	zero := uint64(0)
	return &params.ChainConfig{
		ChainID:                 big.NewInt(EmbeddedChainID),
		HomesteadBlock:          big.NewInt(0),
		EIP150Block:             big.NewInt(0),
		EIP155Block:             big.NewInt(0),
		EIP158Block:             big.NewInt(0),
		ByzantiumBlock:          big.NewInt(0),
		ConstantinopleBlock:     big.NewInt(0),
		PetersburgBlock:         big.NewInt(0),
		IstanbulBlock:           big.NewInt(0),
		MuirGlacierBlock:        big.NewInt(0),
		BerlinBlock:             big.NewInt(0),
		LondonBlock:             big.NewInt(0),
		ArrowGlacierBlock:       big.NewInt(0),
		GrayGlacierBlock:        big.NewInt(0),
		MergeNetsplitBlock:      big.NewInt(0),
		TerminalTotalDifficulty: big.NewInt(0),
		ShanghaiTime:            &zero,
		CancunTime:              &zero,
		PragueTime:              &zero,
		BlobScheduleConfig: &params.BlobScheduleConfig{
			Cancun: params.DefaultCancunBlobConfig,
			Prague: params.DefaultPragueBlobConfig,
		},
	}
}

// embeddedGenesis is the pinned genesis: the rules above, the system contracts
// Cancun and Prague call into, and the clearing house and the admin funded with
// far more ether than they can ever spend (the admin passes gas money on to
// operators).
func embeddedGenesis(clearingHouse, admin common.Address) *core.Genesis {
	funds := new(big.Int).Lsh(big.NewInt(1), 200)
	return &core.Genesis{
		Config:     EmbeddedChainConfig(),
		Timestamp:  0,
		GasLimit:   EmbeddedGasLimit,
		BaseFee:    big.NewInt(params.InitialBaseFee),
		Difficulty: big.NewInt(0),
		Alloc: types.GenesisAlloc{
			params.BeaconRootsAddress:        {Nonce: 1, Code: params.BeaconRootsCode, Balance: common.Big0},
			params.HistoryStorageAddress:     {Nonce: 1, Code: params.HistoryStorageCode, Balance: common.Big0},
			params.WithdrawalQueueAddress:    {Nonce: 1, Code: params.WithdrawalQueueCode, Balance: common.Big0},
			params.ConsolidationQueueAddress: {Nonce: 1, Code: params.ConsolidationQueueCode, Balance: common.Big0},
			clearingHouse:                    {Balance: funds},
			admin:                            {Balance: funds},
		},
	}
}

// EmbeddedOption configures OpenEmbedded.
type EmbeddedOption func(*embeddedConfig)

type embeddedConfig struct {
	httpAddr  string
	logger    *slog.Logger
	afterSend func(common.Hash)
}

// WithAfterSend calls f with each batch commit's transaction hash after the
// transaction is sent and before its receipt is awaited. It exists for fault
// injection: tests and the simulator kill the process there to check that a
// commit in flight is neither lost nor doubled.
func WithAfterSend(f func(tx common.Hash)) EmbeddedOption {
	return func(c *embeddedConfig) { c.afterSend = f }
}

// WithHTTP also serves the chain's JSON-RPC (eth, net, web3) over HTTP on addr,
// e.g. "127.0.0.1:0" for a free loopback port (see HTTPEndpoint). Off by
// default: the embedded chain opens no listener unless asked. It lets other
// processes, or Dial in tests, reach the chain; the endpoint is written to
// the data dir's node.json while the node runs, where AttachEmbedded finds it.
func WithHTTP(addr string) EmbeddedOption {
	return func(c *embeddedConfig) { c.httpAddr = addr }
}

// WithLogger sets the logger for the ledger and for go-ethereum's own messages
// (warnings and errors only; go-ethereum's log is process-wide, so the last
// opened Embedded's logger receives them). Default: slog.Default().
func WithLogger(l *slog.Logger) EmbeddedOption {
	return func(c *embeddedConfig) { c.logger = l }
}

// Embedded is an in-process single-node Ethereum chain with the Settlement
// contract deployed on it, stored in a data dir. It implements Ledger.
//
// It is geth's dev mode (a node, the eth service and a simulated beacon that
// seals a block as soon as a transaction is pending) with settings chosen for
// durability: hash-scheme archive state, so every block's state is written with
// the block, and a key-value store sync after every block, so a commit reported
// by CommitBatch survives kill -9 (the default path-scheme state keeps recent
// state in memory and came back at genesis after kill -9).
type Embedded struct {
	*settlement
	dir     string
	stack   *node.Node
	backend *eth.Ethereum
	db      ethdb.KeyValueSyncer
	client  *ethclient.Client
	// adminKey deploys the contract and admits operators.
	adminKey *ecdsa.PrivateKey

	// syncMu serialises SyncKeyValue calls from CommitBatch and syncLoop.
	syncMu sync.Mutex

	stop      chan struct{}
	syncDone  chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ Ledger = (*Embedded)(nil)

// OpenEmbedded opens (or creates) the embedded chain in dir and returns once it
// is ready for commits. On first start it creates the clearing-house key and the
// chain, deploys the Settlement contract and records its address in dir; later
// starts reuse them. Only one process may open a dir at a time (the node locks
// it).
func OpenEmbedded(ctx context.Context, dir string, opts ...EmbeddedOption) (*Embedded, error) {
	cfg := embeddedConfig{logger: slog.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	routeGethLog(cfg.logger)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open embedded ledger: %w", err)
	}
	key, err := loadOrCreateKey(filepath.Join(dir, keyFileName))
	if err != nil {
		return nil, fmt.Errorf("open embedded ledger in %s: %w", dir, err)
	}
	admin, err := loadOrCreateKey(filepath.Join(dir, adminKeyName))
	if err != nil {
		return nil, fmt.Errorf("open embedded ledger in %s: %w", dir, err)
	}
	e, err := startEmbedded(dir, key, admin, cfg)
	if err != nil {
		return nil, fmt.Errorf("open embedded ledger in %s: %w", dir, err)
	}
	if err := e.bindContract(ctx); err != nil {
		e.Close()
		return nil, fmt.Errorf("open embedded ledger in %s: %w", dir, err)
	}
	return e, nil
}

func startEmbedded(dir string, key, admin *ecdsa.PrivateKey, cfg embeddedConfig) (*Embedded, error) {
	clearingHouse := crypto.PubkeyToAddress(key.PublicKey)
	nodeCfg := node.Config{
		Name:    "faregate-ledger",
		DataDir: filepath.Join(dir, chainDirName),
		// No P2P: no listener, no discovery, no dialing, no peers.
		P2P:    p2p.Config{NoDiscovery: true, NoDial: true, MaxPeers: 0, ListenAddr: ""},
		Logger: nil,
		// In-process RPC only, unless WithHTTP.
		IPCPath:              "",
		BatchRequestLimit:    node.DefaultConfig.BatchRequestLimit,
		BatchResponseMaxSize: node.DefaultConfig.BatchResponseMaxSize,
		HTTPBodyLimit:        node.DefaultConfig.HTTPBodyLimit,
		HTTPTimeouts:         rpc.DefaultHTTPTimeouts,
		UseLightweightKDF:    true,
	}
	if cfg.httpAddr != "" {
		host, portStr, err := net.SplitHostPort(cfg.httpAddr)
		if err != nil {
			return nil, fmt.Errorf("http address %q: %w", cfg.httpAddr, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return nil, fmt.Errorf("http address %q: %w", cfg.httpAddr, err)
		}
		nodeCfg.HTTPHost, nodeCfg.HTTPPort = host, port
		nodeCfg.HTTPModules = []string{"eth", "net", "web3"}
		nodeCfg.HTTPVirtualHosts = []string{"localhost", host}
	}
	stack, err := node.New(&nodeCfg)
	if err != nil {
		return nil, fmt.Errorf("create node: %w", err)
	}

	ethCfg := ethconfig.Defaults
	ethCfg.NetworkId = EmbeddedChainID
	ethCfg.Genesis = embeddedGenesis(clearingHouse, crypto.PubkeyToAddress(admin.PublicKey))
	ethCfg.SyncMode = ethconfig.FullSync
	// Archive hash-scheme state: each block's state is committed with the block,
	// nothing is held back in memory, so the head is recoverable after kill -9.
	ethCfg.StateScheme = rawdb.HashScheme
	ethCfg.NoPruning = true
	ethCfg.SnapshotCache = 0 // no snapshot layer (its journal is lost on kill -9)
	ethCfg.Preimages = false
	// Modest caches: this chain carries one transaction per settlement period.
	ethCfg.DatabaseCache = 64
	ethCfg.DatabaseHandles = 256
	ethCfg.TrieCleanCache = 16
	ethCfg.TrieDirtyCache = 0
	ethCfg.TransactionHistory = 0 // index every transaction (receipt lookups)
	ethCfg.LogNoHistory = true    // Batch reads logs of one block: no log index needed
	ethCfg.TxPool.NoLocals = true
	ethCfg.TxPool.Journal = ""
	// The pool takes no transaction the miner would leave out: with period
	// 0 the beacon seals as long as one is pending, and a tip below the
	// miner's floor (1 mwei) once made it seal empty blocks without end
	// (600 to 1,000 a second, megabytes of disk each second).
	ethCfg.TxPool.PriceLimit = ethCfg.Miner.GasPrice.Uint64()
	ethCfg.Miner.GasCeil = EmbeddedGasLimit
	ethCfg.Miner.PendingFeeRecipient = clearingHouse

	backend, err := eth.New(stack, &ethCfg)
	if err != nil {
		stack.Close()
		return nil, fmt.Errorf("create eth service: %w", err)
	}
	// eth_getLogs and friends live in the filter API, which geth registers
	// separately from the eth service.
	filterSystem := filters.NewFilterSystem(backend.APIBackend, filters.Config{})
	stack.RegisterAPIs([]rpc.API{{Namespace: "eth", Service: filters.NewFilterAPI(filterSystem)}})

	// The simulated beacon drives the post-merge chain; with period 0 its API
	// loop seals a block as soon as a transaction is pending.
	beacon, err := catalyst.NewSimulatedBeacon(0, clearingHouse, backend)
	if err != nil {
		stack.Close()
		return nil, fmt.Errorf("create simulated beacon: %w", err)
	}
	catalyst.RegisterSimulatedBeaconAPIs(stack, beacon)
	stack.RegisterLifecycle(beacon)

	if err := stack.Start(); err != nil {
		stack.Close()
		return nil, fmt.Errorf("start node: %w", err)
	}
	if cfg.httpAddr != "" {
		// Other processes on this host (the role commands) find the running
		// node here instead of failing on the data dir's lock.
		if err := writeNodeFile(dir, stack.HTTPEndpoint()); err != nil {
			stack.Close()
			return nil, err
		}
	}
	client := ethclient.NewClient(stack.Attach())
	e := &Embedded{
		settlement: newSettlement(client, key, big.NewInt(EmbeddedChainID), cfg.logger, time.Millisecond),
		dir:        dir,
		stack:      stack,
		backend:    backend,
		db:         backend.ChainDb(),
		client:     client,
		adminKey:   admin,
		stop:       make(chan struct{}),
		syncDone:   make(chan struct{}),
	}
	e.settlement.afterMined = e.afterMined
	e.settlement.afterSend = cfg.afterSend
	go e.syncLoop()
	head := backend.BlockChain().CurrentBlock()
	cfg.logger.Debug("ledger: embedded chain started", "dir", dir, "head", head.Number, "clearingHouse", clearingHouse)
	return e, nil
}

// afterMined runs after one of our transactions is mined, before reporting
// it. It first waits for the transaction pool to drop the transaction: the pool
// resets to a new head in the background, and until then it validates new
// transactions against the old state (a just-funded account looks empty). The
// pool's Sync method would do this, but it supports one waiter at a time and
// the simulated beacon calls it too: calling it here deadlocked block
// production. Then it makes the block durable.
func (e *Embedded) afterMined(ctx context.Context, tx common.Hash) error {
	pool := e.backend.TxPool()
	for delay := 100 * time.Microsecond; pool.Has(tx); delay = min(2*delay, 5*time.Millisecond) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the transaction pool to drop mined %s: %w", tx, ctx.Err())
		case <-time.After(delay):
		}
	}
	return e.syncStore()
}

// syncStore flushes the key-value store's write-ahead log to disk. Blocks are
// written without sync; without this, kill -9 could lose blocks whose receipts
// were already reported.
func (e *Embedded) syncStore() error {
	e.syncMu.Lock()
	defer e.syncMu.Unlock()
	return e.db.SyncKeyValue()
}

// syncLoop syncs the store after every new head, covering blocks that did not
// come from CommitBatch (transactions sent over HTTP, Fund). CommitBatch syncs
// itself before returning rather than waiting for this loop.
func (e *Embedded) syncLoop() {
	defer close(e.syncDone)
	heads := make(chan core.ChainHeadEvent, 16)
	sub := e.backend.BlockChain().SubscribeChainHeadEvent(heads)
	defer sub.Unsubscribe()
	for {
		select {
		case <-e.stop:
			return
		case err := <-sub.Err():
			if err != nil {
				e.log.Warn("ledger: head subscription ended", "err", err)
			}
			return
		case <-heads:
			if err := e.syncStore(); err != nil {
				e.log.Warn("ledger: sync after block failed", "err", err)
			}
		}
	}
}

// embeddedState is the ledger.json file.
type embeddedState struct {
	Contract common.Address `json:"contract"`
	ChainID  uint64         `json:"chainId"`
	// DeployBlock is the block that deployed the contract, where log scans
	// start; 0 in files written before it was recorded (then found by
	// searching the chain's past state when needed).
	DeployBlock uint64 `json:"deployBlock,omitempty"`
}

// bindContract binds to the contract recorded in dir, or deploys it. The
// contract is always the admin's first deployment (nonce 0), so if an earlier
// start died between deploying and recording, the address is still found and
// the contract adopted instead of deployed twice.
func (e *Embedded) bindContract(ctx context.Context) error {
	path := filepath.Join(e.dir, stateFileName)
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		var st embeddedState
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if err := e.bindTo(ctx, st.Contract); err != nil {
			return fmt.Errorf("contract recorded in %s: %w", path, err)
		}
		if st.DeployBlock != 0 {
			e.setLogStart(st.DeployBlock)
		}
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	admin := newSettlement(e.client, e.adminKey, e.chainID, e.log, e.pollMax)
	admin.afterMined = e.afterMined
	addr := crypto.CreateAddress(admin.from, 0)
	if err := e.bindTo(ctx, addr); err != nil {
		if addr, err = admin.deploy(ctx, e.from); err != nil {
			return err
		}
		if err := e.bindTo(ctx, addr); err != nil {
			return err
		}
		e.setLogStart(admin.logStartBlock(ctx, 0, false))
	}
	// Adopted (an earlier start died before recording): the chain keeps
	// every block's state, so the deployment block is found by searching.
	head, err := e.eth.BlockNumber(ctx)
	if err != nil {
		return fmt.Errorf("read the head: %w", err)
	}
	st, _ := json.MarshalIndent(embeddedState{Contract: addr, ChainID: EmbeddedChainID, DeployBlock: e.logStartBlock(ctx, head, true)}, "", "  ")
	return writeFileAtomic(path, append(st, '\n'), 0o600)
}

// HTTPEndpoint returns the JSON-RPC URL when opened WithHTTP, else "".
func (e *Embedded) HTTPEndpoint() string {
	if e.stack == nil {
		return ""
	}
	return e.stack.HTTPEndpoint()
}

// ClearingHouse returns the address that signs commits (the dev account).
func (e *Embedded) ClearingHouse() common.Address { return e.from }

// Dir returns the data dir.
func (e *Embedded) Dir() string { return e.dir }

// Admin is the contract admin's Account (its key lives in the data dir): it
// admits operators.
func (e *Embedded) Admin() *Account { return e.Account(e.adminKey) }

// OperatorAccount is dev mode's custodial operator: the embedded chain keeps
// operator id's key in its data dir (operators/<id>.key), admitting and funding
// it on first use. Production operators hold their own keys (Client.Account).
func (e *Embedded) OperatorAccount(ctx context.Context, id string) (*Account, error) {
	return custodialOperator(ctx, e.Admin(), e.dir, id)
}

// ReplaceOperatorKey moves custodial operator id to a new key, made and
// kept in the chain's dir in place of the old (lost or stolen; kept beside
// as KEY.replaced-TIME), and funds its account: the contract's
// replaceOperatorAccount for the embedded chain, where the admin holds
// operators' keys. It returns the operator's new Account and the
// replacement's receipt (zero when an earlier, interrupted call had sent
// it).
func (e *Embedded) ReplaceOperatorKey(ctx context.Context, id string) (*Account, Receipt, error) {
	return replaceCustodialOperator(ctx, e.Admin(), e.dir, id)
}

// Fund sends wei from the admin to addr and waits until it is mined, e.g. to
// give an operator's account gas on the embedded chain.
func (e *Embedded) Fund(ctx context.Context, to common.Address, wei *big.Int) error {
	if e.closed.Load() {
		return fmt.Errorf("fund %s: %w", to, ErrClosed)
	}
	_, err := e.Admin().Transfer(ctx, to, wei)
	return err
}

// NextBatchID implements Ledger.
func (e *Embedded) NextBatchID(ctx context.Context) (uint64, error) {
	if e.closed.Load() {
		return 0, ErrClosed
	}
	return e.nextBatchID(ctx)
}

// CommitBatch implements Ledger. When it returns without error the block is
// synced to disk: the batch survives kill -9 of the process.
func (e *Embedded) CommitBatch(ctx context.Context, b Batch) (Receipt, error) {
	if e.closed.Load() {
		return Receipt{}, fmt.Errorf("commit batch %d: %w", b.ID, ErrClosed)
	}
	return e.commitBatch(ctx, b)
}

// Batch implements Ledger.
func (e *Embedded) Batch(ctx context.Context, id uint64) (Batch, error) {
	if e.closed.Load() {
		return Batch{}, fmt.Errorf("read batch %d: %w", id, ErrClosed)
	}
	return e.batch(ctx, id)
}

// VerifyInclusion implements Ledger.
func (e *Embedded) VerifyInclusion(ctx context.Context, batchID uint64, value [32]byte, proof [][32]byte) (bool, error) {
	if e.closed.Load() {
		return false, fmt.Errorf("verify inclusion in batch %d: %w", batchID, ErrClosed)
	}
	return e.verifyInclusion(ctx, batchID, value, proof)
}

// ContractAddress implements Ledger.
func (e *Embedded) ContractAddress() common.Address { return e.address }

// Close stops the chain and closes its store. The data dir can be reopened
// afterwards. Close waits for an in-flight commit (milliseconds here); later
// calls fail with ErrClosed.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		e.txMu.Lock() // let an in-flight commit finish
		defer e.txMu.Unlock()
		close(e.stop)
		<-e.syncDone
		e.client.Close()
		if e.stack.HTTPEndpoint() != "" {
			removeNodeFile(e.dir, e.stack.HTTPEndpoint())
		}
		e.closeErr = e.stack.Close()
	})
	return e.closeErr
}

// loadOrCreateKey reads the hex private key at path, creating it (mode 0600)
// if absent. The key is the dev account: it is funded in genesis and owns the
// contract, so it must be stable for the life of the data dir.
//
// The file is made exclusively, never replaced: two processes opening a new
// data dir at once each made a key and the second replaced the first's, so
// the chain was deployed with one key and every later start read the other
// (an outside review); now the second reads the first's.
func loadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	if _, err := os.Stat(path); err == nil {
		return readKeyFile(path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key, err := crypto.GenerateKey()
	if err != nil {
		return nil, err
	}
	switch err := fare.CreateFile(path, []byte(hex.EncodeToString(crypto.FromECDSA(key))+"\n")); {
	case err == nil:
		return key, nil
	case errors.Is(err, os.ErrExist):
		return readKeyFile(path)
	default:
		return nil, fmt.Errorf("write key: %w", err)
	}
}

// readKeyFile reads a hex secp256k1 private key (optional 0x prefix, surrounding
// whitespace ignored), the format geth's --nodekey and most tools use.
func readKeyFile(path string) (*ecdsa.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := strings.TrimPrefix(strings.TrimSpace(string(raw)), "0x")
	key, err := crypto.HexToECDSA(s)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

// writeFileAtomic writes data to path through a synced temporary file and a
// rename, so a crash leaves either the old file or the complete new one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
