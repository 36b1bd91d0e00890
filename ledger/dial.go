package ledger

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"github.com/faregate/faregate/fare"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/rpc"
)

// Client is a Ledger on any Ethereum JSON-RPC endpoint, signing commits with a
// clearing-house key. It implements Ledger.
type Client struct {
	*settlement
	closed atomic.Bool
}

var _ Ledger = (*Client)(nil)

// dialPollMax caps receipt polling against a remote node: slots are seconds
// long there, and polling faster only loads the node.
const dialPollMax = 500 * time.Millisecond

// Dial connects to the JSON-RPC endpoint rpcURL (http(s), ws(s) or an IPC
// path) and signs with the hex private key in keyFile (optional 0x prefix). With
// contract set to the Settlement contract's address, it binds to that contract
// (which must exist); with contract "" it deploys a new one, whose admin and
// clearing house are both the key's account, and logs its address
// (ContractAddress returns it) so it can be configured from then on. Production
// deployments keep the two roles apart: see Deploy.
func Dial(ctx context.Context, rpcURL string, keyFile string, contract string) (*Client, error) {
	key, err := readKeyFile(keyFile)
	if err != nil {
		return nil, fare.RedactError(fmt.Errorf("dial ledger %s: %w", fare.RedactURL(rpcURL), err), rpcURL)
	}
	return dialKey(ctx, rpcURL, key, contract)
}

// DialReadOnly connects to the JSON-RPC endpoint rpcURL and binds to the
// Settlement contract at contract without a key: for those who only read the
// ledger (an audit, a proof, a status). Every transaction it is asked to send
// fails with ErrReadOnly, and KeyAccount is nil.
func DialReadOnly(ctx context.Context, rpcURL string, contract string) (*Client, error) {
	if contract == "" {
		return nil, fmt.Errorf("dial ledger %s read-only: no contract address (a read-only connection deploys nothing)", fare.RedactURL(rpcURL))
	}
	return dialKey(ctx, rpcURL, nil, contract)
}

// DialTimeout bounds what Dial and DialReadOnly ask the node before they
// return (its chain id, the contract's code and interface version): a node
// that takes the connection and never answers fails the dial, saying so,
// instead of hanging the command or clearing's start.
var DialTimeout = 15 * time.Second

// RequestTimeout bounds each JSON-RPC request a Client sends over HTTP(S),
// from the ones Dial makes to those of clearing's background loops (the
// commit loop, the registry's): a node that stops answering fails the call
// naming the node instead of blocking it for ever. It is read at Dial.
var RequestTimeout = time.Minute

// dialRPC connects to rpcURL; over HTTP(S) each request is bounded by
// RequestTimeout.
func dialRPC(ctx context.Context, rpcURL string) (*ethclient.Client, error) {
	u, err := url.Parse(rpcURL)
	if err != nil {
		// Not url.Parse's words: they quote the URL, or a piece of its
		// password cut at a '#' or escaped, where no redaction finds it.
		return nil, errors.New("does not parse as a URL (check its scheme, host, port and any user:password@ in it)")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return ethclient.DialContext(ctx, rpcURL)
	}
	// The RPC client knows the node by its redacted URL, so that no error
	// of any later call quotes a key in its path or query (an HTTP
	// client's does, for a node that does not answer); the transport
	// sends each request to the real one.
	hc := &http.Client{Transport: boundedTransport{base: http.DefaultTransport, timeout: RequestTimeout, endpoint: u}}
	c, err := rpc.DialOptions(ctx, fare.RedactURL(rpcURL), rpc.WithHTTPClient(hc))
	if err != nil {
		return nil, err
	}
	return ethclient.NewClient(c), nil
}

// boundedTransport gives each HTTP request (its answer's body included) at
// most timeout, and says so when it runs out.
type boundedTransport struct {
	base    http.RoundTripper
	timeout time.Duration
	// endpoint, when set, is where each request goes, with its
	// credentials: the client asks the redacted URL.
	endpoint *url.URL
}

func (t boundedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	parent := r.Context()
	ctx, cancel := context.WithTimeout(parent, t.timeout)
	r = r.WithContext(ctx)
	if t.endpoint != nil {
		ep := *t.endpoint
		r.URL, r.Host = &ep, ep.Host
		r.Header = r.Header.Clone()
		if u := t.endpoint.User; u != nil {
			pw, _ := u.Password()
			r.SetBasicAuth(u.Username(), pw)
		}
	}
	resp, err := t.base.RoundTrip(r)
	if err == nil && resp.StatusCode >= 300 && resp.StatusCode < 400 && resp.Header.Get("Location") != "" {
		// Not followed: the client would resolve it against the redacted
		// URL (and this transport send it back here), and its error would
		// quote the target, a key in it included.
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("the node answered %s, a redirect: give the URL it redirects to", resp.Status)
	}
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && parent.Err() == nil {
			err = fmt.Errorf("the node did not answer within %s: %w", t.timeout, err)
		}
		cancel()
		return nil, err
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

// cancelOnClose releases a request's timer when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// noAnswer says that the node did not answer in time when dctx, a bound of
// the caller's ctx, ran out first.
func noAnswer(ctx, dctx context.Context, bound time.Duration, err error) error {
	if ctx.Err() == nil && errors.Is(dctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("the node did not answer within %s: %w", bound, err)
	}
	return err
}

// dialKey is Dial with the key in hand (nil: read-only).
func dialKey(ctx context.Context, rpcURL string, key *ecdsa.PrivateKey, contract string) (*Client, error) {
	if contract != "" && !common.IsHexAddress(contract) {
		return nil, fmt.Errorf("dial ledger %s: contract %q is not an address", fare.RedactURL(rpcURL), contract)
	}
	// Checking the node and the contract takes a few calls; deploying
	// (below) waits for a block and has its own bound (MineWait).
	dctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	eth, err := dialRPC(dctx, rpcURL)
	if err != nil {
		return nil, fare.RedactError(fmt.Errorf("dial ledger %s: %w", fare.RedactURL(rpcURL), noAnswer(ctx, dctx, DialTimeout, err)), rpcURL)
	}
	chainID, err := eth.ChainID(dctx)
	if err != nil {
		eth.Close()
		return nil, fare.RedactError(fmt.Errorf("dial ledger %s: chain id: %w", fare.RedactURL(rpcURL), noAnswer(ctx, dctx, DialTimeout, err)), rpcURL)
	}
	c := &Client{settlement: newSettlement(eth, key, chainID, slog.Default(), dialPollMax)}
	if contract == "" {
		addr, err := c.deploy(ctx, c.from)
		if err != nil {
			eth.Close()
			return nil, fare.RedactError(fmt.Errorf("dial ledger %s: %w", fare.RedactURL(rpcURL), err), rpcURL)
		}
		slog.Info("ledger: deployed a new settlement contract; configure it for later runs", "address", addr, "chainId", chainID)
		return c, nil
	}
	if err := c.bindTo(dctx, common.HexToAddress(contract)); err != nil {
		eth.Close()
		return nil, fare.RedactError(fmt.Errorf("dial ledger %s: %w", fare.RedactURL(rpcURL), noAnswer(ctx, dctx, DialTimeout, err)), rpcURL)
	}
	return c, nil
}

// Deploy deploys a new Settlement contract on the chain at rpcURL, signed by
// the admin key in adminKeyFile, with clearingHouse as the account that
// commits batches, and returns its address once mined.
func Deploy(ctx context.Context, rpcURL string, adminKeyFile string, clearingHouse common.Address) (common.Address, error) {
	key, err := readKeyFile(adminKeyFile)
	if err != nil {
		return common.Address{}, fare.RedactError(fmt.Errorf("deploy on %s: %w", fare.RedactURL(rpcURL), err), rpcURL)
	}
	dctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	eth, err := dialRPC(dctx, rpcURL)
	if err != nil {
		return common.Address{}, fare.RedactError(fmt.Errorf("deploy on %s: %w", fare.RedactURL(rpcURL), noAnswer(ctx, dctx, DialTimeout, err)), rpcURL)
	}
	defer eth.Close()
	chainID, err := eth.ChainID(dctx)
	if err != nil {
		return common.Address{}, fare.RedactError(fmt.Errorf("deploy on %s: chain id: %w", fare.RedactURL(rpcURL), noAnswer(ctx, dctx, DialTimeout, err)), rpcURL)
	}
	s := newSettlement(eth, key, chainID, slog.Default(), dialPollMax)
	addr, err := s.deploy(ctx, clearingHouse)
	if err != nil {
		return common.Address{}, fare.RedactError(fmt.Errorf("deploy on %s: %w", fare.RedactURL(rpcURL), err), rpcURL)
	}
	return addr, nil
}

// Signer returns the address the client signs commits with.
func (c *Client) Signer() common.Address { return c.from }

// NextBatchID implements Ledger.
func (c *Client) NextBatchID(ctx context.Context) (uint64, error) {
	if c.closed.Load() {
		return 0, ErrClosed
	}
	return c.nextBatchID(ctx)
}

// CommitBatch implements Ledger. It returns once the transaction is in a block
// (one confirmation); on chains that can reorg, callers wanting finality should
// re-read the batch later.
func (c *Client) CommitBatch(ctx context.Context, b Batch) (Receipt, error) {
	if c.closed.Load() {
		return Receipt{}, fmt.Errorf("commit batch %d: %w", b.ID, ErrClosed)
	}
	return c.commitBatch(ctx, b)
}

// Batch implements Ledger. The per-operator amounts come from the committing
// block's logs, so the node must still serve logs for that block.
func (c *Client) Batch(ctx context.Context, id uint64) (Batch, error) {
	if c.closed.Load() {
		return Batch{}, fmt.Errorf("read batch %d: %w", id, ErrClosed)
	}
	return c.batch(ctx, id)
}

// VerifyInclusion implements Ledger.
func (c *Client) VerifyInclusion(ctx context.Context, batchID uint64, value [32]byte, proof [][32]byte) (bool, error) {
	if c.closed.Load() {
		return false, fmt.Errorf("verify inclusion in batch %d: %w", batchID, ErrClosed)
	}
	return c.verifyInclusion(ctx, batchID, value, proof)
}

// ContractAddress implements Ledger.
func (c *Client) ContractAddress() common.Address { return c.address }

// Close closes the RPC connection. It waits for an in-flight commit, which on a
// remote chain can take a slot or more: cancel the commit's context to stop it
// sooner. Later calls fail with ErrClosed.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.txMu.Lock()
	defer c.txMu.Unlock()
	c.eth.Close()
	return nil
}
