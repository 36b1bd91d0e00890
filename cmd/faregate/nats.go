package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// newNATSCmd is `faregate nats`: what an external nats-server or cluster
// needs to admit exactly the terminals of the on-chain registry.
func newNATSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nats",
		Short: "NATS access for an external nats-server: its configuration from the chain registry, terminals' NKeys",
		Long: `The embedded nats-server of ` + "`faregate clearing`" + ` follows the on-chain terminal
registry by itself. An external server or cluster (faregate clearing --nats URL)
is configured with ` + "`faregate nats config`" + `, regenerated and reloaded after every
registration or revocation.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newNATSConfigCmd(), newNATSUserCmd())
	return cmd
}

// natsConfigFlags are the flags of `faregate nats config`.
type natsConfigFlags struct {
	dataDir, out, clearingSeed, jetstreamDir, listen, tlsCert, tlsKey string
	lf                                                                ledgerFlags
	verifierKeys                                                      []string
	verifierPartitions                                                int
}

func newNATSConfigCmd() *cobra.Command {
	var f natsConfigFlags
	cmd := &cobra.Command{
		Use:   "config --clearing-seed FILE [--out FILE] [--listen HOST:PORT] [--jetstream-dir DIR] [--tls-cert FILE --tls-key FILE]",
		Short: "Write a nats-server configuration admitting the registry's terminals (each only its own subjects) and clearing",
		Long: `Reads the on-chain terminal registry (the embedded chain in --data DIR/chain,
or --eth-rpc URL --contract ADDR; reading needs no --eth-key) and writes a nats-server
configuration: one NKey user per registered, unrevoked terminal (derived from
its registered event key) allowed only its own subjects, clearing's user with
full access, no anonymous access. Revoked terminals are left out.

--clearing-seed is clearing's NATS user seed file ("SU...", as nk or nsc write
it); when the file does not exist a new user seed is created there (mode 0600).
Give the same file to ` + "`faregate clearing --nats URL --nats-seed FILE`" + `.

Every flag is checked, and the result parsed as nats-server would, before
anything is written; --out is replaced atomically. After a registration or a
revocation, run the command again and reload the server (nats-server --signal
reload, or SIGHUP): a revoked terminal is disconnected and refused.`,
		Example: `  # an external server admitting the registry of a shared chain
  faregate nats config --eth-rpc http://127.0.0.1:8545 --contract 0xC0FFEE... \
      --clearing-seed clearing.nk --listen 0.0.0.0:4222 --jetstream-dir /var/lib/nats \
      --tls-cert nats.pem --tls-key nats-key.pem --out nats.conf
  nats-server -c nats.conf &
  faregate clearing --nats tls://nats.example:4222 --nats-seed clearing.nk --nats-ca ca.pem --eth-rpc ...
  # after a registration or revocation: the same nats config command, then
  nats-server --signal reload
  # the embedded chain of a stopped clearing (DIR/chain), to stdout
  faregate nats config --data data/clearing --clearing-seed clearing.nk`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return f.run(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data", "data/clearing", "`DIR` of `faregate clearing --data`: its embedded chain (DIR/chain) holds the registry")
	fl.StringVar(&f.out, "out", "-", "`FILE` to write the configuration to (- is stdout)")
	fl.StringVar(&f.clearingSeed, "clearing-seed", "", "clearing's NATS user seed `FILE` (SU...); created (mode 0600) when it does not exist (required)")
	fl.StringVar(&f.jetstreamDir, "jetstream-dir", "", "enable JetStream with its file store in `DIR` (clearing needs JetStream; without this flag enable it elsewhere)")
	fl.StringVar(&f.listen, "listen", "", "client listen address `HOST:PORT` (default: nats-server's, 0.0.0.0:4222)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate (chain) `FILE`: clients must use TLS (with --tls-key)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "PEM private key `FILE` of --tls-cert")
	fl.StringSliceVar(&f.verifierKeys, "verifier-key", nil, "`P=U...`: a verifier process's NATS user (its public NKey) admitted to partition P with that partition's verifier permissions only (repeat for each partition and verifier; see faregate clearing verifier)")
	fl.IntVar(&f.verifierPartitions, "verifier-partitions", 0, "`N` verifier partitions the verifiers may work on (as faregate clearing --verifier-partitions)")
	f.lf.register(cmd)
	// This command reads a registry; it never deploys a contract.
	fl.Lookup("contract").Usage = "settlement contract address whose terminal registry to read (required with --eth-rpc)"
	return cmd
}

// natsConfigPlan is what the flags say, checked, with paths made absolute.
type natsConfigPlan struct {
	out          string // "" for stdout
	seedPath     string
	seed         nkeys.KeyPair
	newSeed      bool   // seed does not exist yet: write it
	admitted     string // the clearing user --out admitted before ("": none)
	clearingUser string
	verifiers    clearing.Verifiers
	listen       string
	host         string
	port         int
	jetstreamDir string
	tlsCert      string
	tlsKey       string
	chainDir     string // the embedded chain, "" with --eth-rpc
}

// check validates every flag without writing anything.
func (f *natsConfigFlags) check() (*natsConfigPlan, error) {
	p := &natsConfigPlan{}
	if f.clearingSeed == "" {
		return nil, usageErr("--clearing-seed FILE is required: clearing's NATS user seed (created when the file does not exist), so that the configuration admits clearing")
	}
	p.seedPath = f.clearingSeed
	kp, err := readUserSeed("--clearing-seed", f.clearingSeed)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := checkParentDir(f.clearingSeed); err != nil {
			return nil, fmt.Errorf("--clearing-seed: %w", err)
		}
		if kp, err = nkeys.CreateUser(); err != nil {
			return nil, fmt.Errorf("--clearing-seed: create user seed: %w", err)
		}
		p.newSeed = true
	case err != nil:
		return nil, fmt.Errorf("--clearing-seed: %w", err)
	}
	p.seed = kp
	if p.clearingUser, err = kp.PublicKey(); err != nil {
		return nil, fmt.Errorf("--clearing-seed: %w", err)
	}
	if p.verifiers, err = checkVerifierFlags(f.verifierKeys, f.verifierPartitions); err != nil {
		return nil, err
	}
	if ps := unadmittedPartitions(p.verifiers); len(ps) > 0 {
		slog.Warn("verifier partitions no verifier user is admitted to: no verifier may work on them, and their events wait; add --verifier-key P=U... for each", "partitions", fmt.Sprint(ps))
	}
	if f.out != "" && f.out != "-" {
		if st, err := os.Stat(f.out); err == nil && st.IsDir() {
			return nil, fmt.Errorf("--out %s is a directory", f.out)
		}
		if err := checkParentDir(f.out); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
		if sameFile(f.out, f.clearingSeed) {
			return nil, usageErr("--out and --clearing-seed name the same file")
		}
		p.admitted = clearingUserIn(f.out)
		if old := p.admitted; p.newSeed && old != "" && old != p.clearingUser {
			// A mistyped seed path makes a new user, and the reload would
			// lock out the clearing that runs with the old one.
			return nil, fmt.Errorf("--clearing-seed %s does not exist, so a new clearing user would replace %s, the one %s admits now, and the running clearing would be refused at the next reload: check the path (clearing connects with its existing seed), or remove %s first to start over", f.clearingSeed, old, f.out, f.out)
		}
		p.out = f.out
	}
	if f.listen != "" {
		host, port, err := splitHostPort(f.listen)
		if err != nil {
			return nil, usageErrorf("--listen %q: want HOST:PORT: %v", f.listen, err)
		}
		if port < 1 || port > 65535 {
			return nil, usageErrorf("--listen %q: port %d is not in 1..65535", f.listen, port)
		}
		if err := confString(f.listen); err != nil {
			return nil, usageErrorf("--listen: %v", err)
		}
		p.listen, p.host, p.port = f.listen, host, port
	}
	if f.jetstreamDir != "" {
		if p.jetstreamDir, err = confPath(f.jetstreamDir); err != nil {
			return nil, usageErrorf("--jetstream-dir: %v", err)
		}
		if st, err := os.Stat(p.jetstreamDir); err == nil && !st.IsDir() {
			return nil, usageErrorf("--jetstream-dir %s is not a directory", f.jetstreamDir)
		}
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, usageErr("--tls-cert and --tls-key go together: give both (clients must use TLS) or neither")
	}
	if f.tlsCert != "" {
		if err := checkInputFiles(inputFile{"--tls-cert", f.tlsCert, maxPEMFileSize}, inputFile{"--tls-key", f.tlsKey, maxPEMFileSize}); err != nil {
			return nil, err
		}
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err == nil {
			err = clearing.CheckCertificateDates(cert, time.Now())
		}
		if err != nil {
			return nil, fmt.Errorf("--tls-cert %s / --tls-key %s: %w", f.tlsCert, f.tlsKey, err)
		}
		if p.tlsCert, err = confPath(f.tlsCert); err != nil {
			return nil, fmt.Errorf("--tls-cert: %w", err)
		}
		if p.tlsKey, err = confPath(f.tlsKey); err != nil {
			return nil, fmt.Errorf("--tls-key: %w", err)
		}
	}
	if f.lf.rpc == "" {
		if f.lf.keyFile != "" || f.lf.contract != "" {
			return nil, usageErr("--eth-key and --contract go with --eth-rpc (without it the registry is read from the embedded chain in --data)")
		}
		p.chainDir = filepath.Join(f.dataDir, "chain")
		// Opening a missing embedded chain would start a new, empty one.
		if _, err := os.Stat(filepath.Join(p.chainDir, "ledger.json")); err != nil {
			return nil, fmt.Errorf("no embedded chain in %s (%v): give the --data DIR of `faregate clearing`, or --eth-rpc for a remote chain", p.chainDir, err)
		}
	} else {
		// Without a contract the ledger client would deploy a new one.
		if f.lf.contract == "" {
			return nil, usageErr("--eth-rpc needs --contract: the address of the settlement contract whose registry to read")
		}
		// As clearing checks them: a URL without a scheme was dialled and
		// failed with exit 1, quoting it (an outside re-check).
		if err := checkChainFlags(f.lf.rpc, f.lf.contract); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (f *natsConfigFlags) run(ctx context.Context, stdout, stderr io.Writer) error {
	p, err := f.check()
	if err != nil {
		return err
	}
	quiet := quietLogger(stderr)
	// While clearing runs the embedded chain, read it through its node.
	var led ledger.Ledger
	if p.chainDir != "" {
		if a, err := ledger.AttachEmbedded(ctx, p.chainDir); err == nil {
			led = a
		} else if !errors.Is(err, ledger.ErrNotRunning) {
			return fmt.Errorf("open ledger: %w", err)
		}
	}
	if led == nil && p.chainDir == "" && f.lf.keyFile == "" {
		// Reading the registry needs no key.
		if led, err = ledger.DialReadOnly(ctx, f.lf.rpc, f.lf.contract); err != nil {
			return fmt.Errorf("open ledger: %w", err)
		}
	}
	if led == nil {
		if led, err = f.lf.open(ctx, p.chainDir, quiet); err != nil {
			return fmt.Errorf("open ledger: %w", err)
		}
	}
	defer led.Close()
	reg := clearing.NewChainTerminals(led)
	if err := reg.Sync(ctx); err != nil {
		return fmt.Errorf("read the terminal registry: %w", err)
	}
	terms := reg.All()
	source := "embedded chain " + p.chainDir
	if p.chainDir == "" {
		source = "chain " + fare.RedactURL(f.lf.rpc)
	}
	if err := clearing.CheckVerifierKeys(terms, p.clearingUser, p.verifiers); err != nil {
		return asUsage(err)
	}
	conf, admitted, revoked := p.render(terms, fmt.Sprintf("%s, contract %s", source, led.ContractAddress().Hex()))
	if err := p.write(conf); err != nil {
		return err
	}
	if p.admitted != "" && p.admitted != p.clearingUser {
		fmt.Fprintf(stderr, "warning: %s admitted clearing user %s; it now admits %s (--clearing-seed %s) instead: start clearing with that seed before the servers reload it, or the running clearing is refused\n", p.out, p.admitted, p.clearingUser, p.seedPath)
	}
	if p.newSeed {
		fmt.Fprintf(stderr, "created clearing's NATS user seed %s (mode 0600): user %s\n", p.seedPath, p.clearingUser)
	} else if st, err := os.Stat(p.seedPath); err == nil && st.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(stderr, "warning: clearing's NATS user seed %s is readable by others (mode %v); chmod 600 it\n", p.seedPath, st.Mode().Perm())
	}
	dest := "stdout"
	if p.out != "" {
		dest = p.out
	}
	fmt.Fprintf(stderr, "nats-server configuration written to %s: %d terminals admitted, %d revoked left out, clearing user %s\n", dest, admitted, revoked, p.clearingUser)
	if p.jetstreamDir == "" {
		fmt.Fprintln(stderr, "note: no --jetstream-dir: clearing needs JetStream, enable it in the server's configuration")
	}
	if p.out == "" {
		_, err = io.WriteString(stdout, conf)
	}
	return err
}

// clearingUserIn is the clearing user a configuration written by `nats
// config` at path admits ("" when there is none, or no file).
func clearingUserIn(path string) string {
	b, err := readInputFile("--out", path, maxRegistrySize)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutSuffix(strings.TrimSpace(line), "}  # clearing"); ok {
			if _, q, ok := strings.Cut(rest, "nkey: "); ok {
				return strings.Trim(strings.TrimSpace(q), `"`)
			}
		}
	}
	return ""
}

// render is the configuration file: nats-server's own settings, then the
// users and permissions of clearing.NATSServerConfig.
func (p *natsConfigPlan) render(terms []clearing.RegisteredTerminal, source string) (conf string, admitted, revoked int) {
	for _, t := range terms {
		if t.Revoked() {
			revoked++
		} else {
			admitted++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# nats-server configuration for Faregate: the terminal registry of the %s.\n", source)
	fmt.Fprintf(&b, "# %d terminals registered and not revoked, %d revoked (left out).\n", admitted, revoked)
	b.WriteString("# Regenerate it after every registration or revocation and reload the server\n")
	b.WriteString("# (nats-server --signal reload, or SIGHUP).\n")
	if p.listen != "" {
		fmt.Fprintf(&b, "listen: %q\n", p.listen)
	}
	if p.tlsCert != "" {
		fmt.Fprintf(&b, "tls {\n  cert_file: %q\n  key_file: %q\n  timeout: 2\n}\n", p.tlsCert, p.tlsKey)
	}
	if p.jetstreamDir != "" {
		fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n}\n", p.jetstreamDir)
	}
	b.WriteString(clearing.NATSServerConfig(terms, p.clearingUser, p.verifiers))
	return b.String(), admitted, revoked
}

// write checks conf by parsing it as nats-server does, then writes the new
// seed (if any) and replaces --out atomically. Nothing is written when conf
// does not parse.
func (p *natsConfigPlan) write(conf string) error {
	dir := ""
	if p.out != "" {
		dir = filepath.Dir(p.out)
	}
	tmp, err := os.CreateTemp(dir, ".faregate-nats-*.conf")
	if err != nil {
		return fmt.Errorf("nats-server configuration: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.WriteString(conf); err != nil {
		tmp.Close()
		return fmt.Errorf("nats-server configuration: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("nats-server configuration: %w", err)
	}
	if err := p.verify(tmp.Name()); err != nil {
		return fmt.Errorf("the generated nats-server configuration is not what was asked for (a bug): %w", err)
	}
	if p.newSeed {
		seed, err := p.seed.Seed()
		if err != nil {
			return err
		}
		fd, err := os.OpenFile(p.seedPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("--clearing-seed: %w", err)
		}
		_, err = fd.Write(append(seed, '\n'))
		if cerr := fd.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(p.seedPath)
			return fmt.Errorf("--clearing-seed: %w", err)
		}
	}
	if p.out == "" {
		return nil
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := os.Rename(tmp.Name(), p.out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	done = true
	return nil
}

// verify parses the configuration file at path as nats-server does and
// checks that it says what the flags asked for.
func (p *natsConfigPlan) verify(path string) error {
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		return err
	}
	var clearingUser *server.NkeyUser
	for _, u := range o.Nkeys {
		if u.Nkey == p.clearingUser {
			clearingUser = u
		}
	}
	switch {
	case clearingUser == nil || clearingUser.Permissions != nil:
		return fmt.Errorf("clearing user %s not admitted with full access", p.clearingUser)
	case o.NoAuthUser != "" || len(o.Users) > 0 || o.Username != "" || o.Authorization != "":
		return errors.New("it admits users other than NKeys")
	case p.listen != "" && (o.Host != p.host || o.Port != p.port):
		return fmt.Errorf("listens on %s:%d, want %s", o.Host, o.Port, p.listen)
	case p.jetstreamDir != "" && (!o.JetStream || o.StoreDir != p.jetstreamDir):
		return fmt.Errorf("JetStream %v in %q, want on in %q", o.JetStream, o.StoreDir, p.jetstreamDir)
	case p.tlsCert != "" && (o.TLSConfig == nil || o.AllowNonTLS):
		return errors.New("TLS is not required")
	}
	return nil
}

// readUserSeed reads an NKey user seed file ("SU..."); a missing file gives
// an error matching fs.ErrNotExist, one that is no seed file's size or not a
// regular file a usage error naming what (checkInputFile).
func readUserSeed(what, path string) (nkeys.KeyPair, error) {
	if err := checkInputFile(what, path, maxKeyFileSize); err != nil {
		return nil, err
	}
	return clearing.ReadNATSUserSeed(path)
}

// checkParentDir checks that the directory a file is to be written in exists.
func checkParentDir(path string) error {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory of %s: %w", path, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// sameFile reports whether a and b name the same file, existing or not.
func sameFile(a, b string) bool {
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	if errA == nil && errB == nil && absA == absB {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// confString refuses what a nats-server configuration string cannot carry
// as written: quotes, backslashes (escapes) and control characters.
func confString(s string) error {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return fmt.Errorf("%q: quotes, backslashes and control characters are not allowed", s)
		}
	}
	return nil
}

// confPath is path made absolute (nats-server resolves relative paths against
// its working directory, not the configuration file's), checked by confString.
func confPath(path string) (string, error) {
	if err := confString(path); err != nil {
		return "", err
	}
	return filepath.Abs(path)
}

func newNATSUserCmd() *cobra.Command {
	var keyFile, publicKey, id string
	cmd := &cobra.Command{
		Use:   "user --id TERMINAL_ID (--key FILE | --public-key KEY)",
		Short: "Print a terminal's NATS user NKey, derived from its event key",
		Long: `Prints the NATS user NKey ("U...") a terminal connects as: derived from its
event-signing key and its id, the same user a ` + "`faregate nats config`" + ` file and
clearing's embedded server admit for it. --key is the terminal's key file
(` + "`faregate terminal keygen`" + ` writes it; never created here); --public-key is the
terminal's registered public key (0x hex as the registry writes it, or the
base64 older registry files hold), all an operator checking a configuration
needs.`,
		Example: `  faregate nats user --id t1 --key t1.key
  faregate nats user --id t1 --public-key 0xde626bec0a145f1d96a9de241b79785f49f51b2d02a98ad0f16982d2e035a58b
  grep -c "$(faregate nats user --id t1 --key t1.key)" nats.conf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := fare.ValidateID(id); err != nil {
				return usageErrorf("--id %q: %v", id, err)
			}
			if (keyFile == "") == (publicKey == "") {
				return usageErrorf("give exactly one of --key FILE (the terminal's key file) and --public-key KEY (its registered public key)")
			}
			var nkey string
			if keyFile != "" {
				key, err := readTerminalKey(keyFile)
				if err != nil {
					return err
				}
				ident, err := fare.NewNATSIdentity(key, id)
				if err != nil {
					return err
				}
				nkey = ident.PublicKey()
			} else {
				pub, err := parsePublicKey(publicKey)
				if err != nil {
					return usageErrorf("--public-key: %v", err)
				}
				if nkey, err = fare.NATSUserKey(pub[:], id); err != nil {
					return usageErrorf("--public-key: %v", err)
				}
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), nkey)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&id, "id", "", "terminal id, as registered")
	fl.StringVar(&keyFile, "key", "", "terminal's ed25519 seed `FILE` (hex, as `faregate terminal keygen` writes it)")
	fl.StringVar(&publicKey, "public-key", "", "terminal's registered ed25519 public `KEY`, 0x hex (or base64)")
	return cmd
}

// readTerminalKey reads a terminal key file (an ed25519 seed in hex); unlike
// terminal.LoadOrCreateKey it never creates one.
func readTerminalKey(path string) (ed25519.PrivateKey, error) {
	b, err := readInputFile("--key", path, maxKeyFileSize)
	if err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, usageErrorf("--key %s: not a terminal key file (want an ed25519 seed of %d hex-encoded bytes)", path, ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// unadmittedPartitions are the partitions of v no verifier user is
// admitted to: their events wait for ever on servers of this configuration.
func unadmittedPartitions(v clearing.Verifiers) []int {
	var out []int
	for p := range v.Partitions {
		if !slices.ContainsFunc(v.Keys, func(k clearing.VerifierKey) bool { return k.Partition == p }) {
			out = append(out, p)
		}
	}
	return out
}

// checkVerifierFlags checks --verifier-key (P=U..., the partition a
// verifier may work on and its public NKey) and --verifier-partitions.
func checkVerifierFlags(keys []string, partitions int) (clearing.Verifiers, error) {
	if partitions < 0 || partitions > clearing.MaxVerifierPartitions {
		return clearing.Verifiers{}, usageErrorf("--verifier-partitions %d: want 0 to %d", partitions, clearing.MaxVerifierPartitions)
	}
	if len(keys) > 0 && partitions == 0 {
		return clearing.Verifiers{}, usageErr("--verifier-key needs --verifier-partitions N: the partitions the verifiers work on")
	}
	v := clearing.Verifiers{Partitions: partitions}
	for _, s := range keys {
		k, err := clearing.ParseVerifierKey(s)
		if err != nil {
			return clearing.Verifiers{}, usageErrorf("--verifier-key: %v", err)
		}
		if k.Partition >= partitions {
			return clearing.Verifiers{}, usageErrorf("--verifier-key %s: partition %d, but --verifier-partitions %d numbers them 0 to %d", s, k.Partition, partitions, partitions-1)
		}
		v.Keys = append(v.Keys, k)
	}
	return v, nil
}

// parseNATSURL reads one URL of a --nats list as nats.go does: trimmed,
// and nats:// when it names no scheme (host:port).
func parseNATSURL(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	if !strings.Contains(raw, "://") {
		raw = "nats://" + raw
	}
	return url.Parse(raw)
}

// checkNATSURLs checks a client's --nats URLs (comma-separated) before
// anything starts: one that does not parse is a typo no retry mends.
func checkNATSURLs(urls string) error {
	for _, u := range strings.Split(urls, ",") {
		u = strings.TrimSpace(u)
		p, err := parseNATSURL(u)
		if err != nil {
			// Not url.Parse's words: they quote the URL, or a piece of its
			// password cut at a '#' or escaped, where no redaction finds it.
			return fmt.Errorf("--nats %q: does not parse as a URL (check its host, its port and any user:password@ in it)", fare.RedactURL(u))
		}
		switch p.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("--nats %q: want nats://, tls://, ws:// or wss:// URLs, comma-separated", fare.RedactURL(u))
		}
		if p.Hostname() == "" {
			return fmt.Errorf("--nats %q: no host", fare.RedactURL(u))
		}
		if strings.Contains(p.Hostname(), ":") && !strings.HasPrefix(p.Host, "[") || strings.ContainsAny(p.Hostname(), "[]") {
			// url.Parse takes "::::" as a host; the dialer never will.
			return fmt.Errorf("--nats %q: host %q: an IPv6 address goes in brackets ([::1]:4222)", fare.RedactURL(u), p.Hostname())
		}
		if port := p.Port(); port != "" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("--nats %q: port %s: want 1 to 65535", fare.RedactURL(u), port)
			}
		}
	}
	return nil
}

// checkNATSCA checks a --nats-ca file: readable, with a PEM certificate.
func checkNATSCA(ca string) error {
	pem, err := readInputFile("--nats-ca", ca, maxPEMFileSize)
	if err != nil {
		return err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return fmt.Errorf("--nats-ca %s: no PEM certificate in it", ca)
	}
	return nil
}
