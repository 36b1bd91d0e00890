package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/faregate/faregate/biometrics"
	"github.com/faregate/faregate/biometrics/galleryfeed"
	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

func newTerminalCmd() *cobra.Command {
	var (
		id, operator, stop, keyFile, dataDir, natsURL, source, denyFile string
		natsCA, metricsAddr                                             string
		clearingKeys, riderCategories                                   []string
		rate                                                            float64
		count, minFreeMiB                                               int
		acceptLostTaps                                                  bool
		listWait                                                        time.Duration
		cam                                                             cameraFlags
		ff                                                              faceGalleryFlags
	)
	cmd := &cobra.Command{
		Use:   "terminal",
		Short: "Run a turnstile agent: decide taps, sign, keep a durable outbox, stream to clearing",
		Long: `Run a turnstile agent. Taps come from --source:
  stdin     one tap per line: "entry|exit|validate card TOKEN [RIDER_CATEGORY] [frames=F,...]"; each
            answer shows the decision and the rider category the card's enrolment gives
            (the gate's copy of clearing's enrolments; a claimed category is not used, and
            one that is not in --rider-categories refuses the line)
  generate  --rate taps per second from random cards, --count in all (0: until stopped)
  none      no card reader (a face-only gate with --camera)

With --camera the gate has a camera: frames (JPEG, PNG, or descriptor frames
of an on-board camera) from a directory the camera writes into, or a stream on
standard input (-: MJPEG or PNGs back to back). Every --camera-frames frames
are one presentation, decided through detection, landmarks, descriptor and the
gate's gallery (1:N) under the operating point (--face-policy), and written as
a signed face tap: accepted, or refused with the reason (tap a card). The
gallery is the gate's share of clearing's face enrolments (FAREGATE_FACES),
kept encrypted in --data. A concession card whose holder's face the gate holds
must be shown by that holder: a stdin tap line may end with frames=F1,F2 (the
camera's frames of whoever presents the card).`,
		RunE: func(cmd *cobra.Command, args []string) (runErr error) {
			switch source {
			case "stdin", "generate", "none":
			default:
				return usageErrorf("--source %q: want stdin, generate or none", source)
			}
			if listWait < 0 || listWait > 10*time.Minute {
				return usageErrorf("--list-wait %s: want 0 (do not wait) to 10m", listWait)
			}
			if minFreeMiB > 1<<20 {
				return usageErrorf("--min-free-mib %d: want at most %d (1 TiB), 0 for the default or negative for no check", minFreeMiB, 1<<20)
			}
			// Below the room the store's own writes need, a disk that
			// fills kills the gate with SIGBUS (Badger writes through
			// mapped files) instead of refusing taps (an outside test).
			if minFreeMiB > 0 && minFreeMiB < terminal.MinFreeStoreMiB {
				return usageErrorf("--min-free-mib %d: want at least %d, the room the outbox's store needs for its own writes (below it a full disk kills the gate with SIGBUS), 0 for the default or negative for no check", minFreeMiB, terminal.MinFreeStoreMiB)
			}
			if source != "generate" {
				// Ignored otherwise, as camera settings are without a
				// camera (an outside review ran stdin with --rate 5).
				for _, name := range []string{"rate", "count"} {
					if cmd.Flags().Changed(name) {
						return usageErrorf("--%s goes with --source generate (this gate's taps come from --source %s)", name, source)
					}
				}
			}
			if source == "generate" && !(rate >= minGenerateRate && rate <= maxGenerateRate) {
				return usageErrorf("--rate %v: want taps per second from %v to %v", rate, minGenerateRate, maxGenerateRate)
			}
			// Everything a typo can break is checked before a key or an
			// outbox is made (exit 64, nothing created); files and ports,
			// which may come right by themselves, fail with 1 (restarted).
			for _, f := range []struct{ flag, v string }{{"--id", id}, {"--operator", operator}, {"--stop", stop}} {
				if err := fare.ValidateID(f.v); err != nil {
					return usageErrorf("%s %q: %v", f.flag, f.v, err)
				}
			}
			if err := checkNATSURLs(natsURL); err != nil {
				return asUsage(err)
			}
			if metricsAddr != "" {
				// host:port with a numeric port: a typo is no port in use.
				if _, port, err := net.SplitHostPort(metricsAddr); err != nil {
					return usageErrorf("--metrics %q: %v (want host:port, e.g. 127.0.0.1:9101)", metricsAddr, err)
				} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
					return usageErrorf("--metrics %q: port %q is not a number from 0 to 65535", metricsAddr, port)
				}
			}
			if natsCA == "" && !natsSafeWithoutCA(natsURL) {
				// Events carry raw card tokens: without TLS they cross the
				// network in the clear, to whoever answers at that address
				// (an outside red team).
				slog.Warn("the gate talks to NATS without TLS: its events, which carry card tokens, cross the network in the clear; give --nats-ca (and tls:// URLs) to turn TLS on", "nats", fare.RedactURLList(natsURL))
			}
			if natsCA != "" {
				// A CA file not there yet (a mount, provisioning) must not
				// stop a gate that works offline: it takes taps and keeps
				// trying, saying why. One that is there but holds no
				// certificate is a mistake no wait mends.
				if err := checkNATSCA(natsCA); errors.Is(err, fs.ErrNotExist) {
					slog.Warn("the gate cannot reach clearing until this is fixed; it takes taps into its outbox meanwhile", "err", err)
				} else if err != nil {
					return asUsage(err)
				}
			}
			if cam.dir == "" {
				for _, name := range []string{"camera-keep", "camera-frames", "camera-gate", "camera-direction", "models", "face-policy", "camera-cnn", "camera-descriptors", "face-gallery-max-age"} {
					// Only on the command line: an image's or a shared
					// environment file's FAREGATE_MODELS is no mistake.
					if givenOnCommandLine(cmd, name) {
						return usageErrorf("--%s is a camera setting: give --camera too (this gate has none)", name)
					}
				}
			}
			if ff.maxAge < minFaceGalleryMaxAge || ff.maxAge > galleryfeed.MaxMaxAge {
				return usageErrorf("--face-gallery-max-age %s: want at least %s (two of clearing's face gallery heads, issued every %s: shorter, a gate hearing every head still finds its gallery stale between them and refuses faces) and at most %s (an erased subject must stop matching within it; clearing refuses later taps of an erased subject)",
					ff.maxAge, minFaceGalleryMaxAge, clearing.DefaultFaceHeadEvery, galleryfeed.MaxMaxAge)
			}
			if count < 0 {
				return usageErrorf("--count %d: want 0 (until stopped) or more", count)
			}
			if err := checkDataDir("--data", dataDir); err != nil {
				return err
			}
			if err := checkRiderCategories(riderCategories); err != nil {
				return err
			}
			trusted, err := parseClearingKeys(clearingKeys)
			if err != nil {
				return asUsage(err)
			}
			if err := cam.check(source); err != nil {
				return asUsage(err)
			}
			// The gate never makes its own key: a key file not there is a
			// typo or a lost key, and a key made here is registered
			// nowhere, so the gate would take taps clearing can never
			// apply. `terminal keygen` makes one and prints its entry.
			if _, err := os.Stat(keyFile); errors.Is(err, fs.ErrNotExist) {
				if terminal.HasOutbox(dataDir) {
					return fmt.Errorf("--key %s does not exist, but --data %s holds this terminal's outbox: give the key file it was made with (a new key's events would be refused by clearing)", keyFile, dataDir)
				}
				return fmt.Errorf("--key %s does not exist: make the terminal's key with `faregate terminal keygen --key %s --id %s --operator %s --stop %s` and put the entry it prints in the registry (a gate with a key the registry does not hold takes taps clearing can never apply)", keyFile, keyFile, id, operator, stop)
			}
			deny := terminal.TokenSet{}
			if denyFile != "" {
				if deny, err = readDenySeed(denyFile); err != nil {
					return err
				}
				if len(deny) == 0 {
					slog.Warn("the --deny seed holds no token", "file", denyFile)
				} else {
					slog.Info("deny seed loaded", "file", denyFile, "tokens", len(deny))
				}
			}
			// The metrics address is taken before anything is made: one in
			// use is a usage error, not a half-started gate.
			var metricsLn net.Listener
			if metricsAddr != "" {
				if metricsLn, err = net.Listen("tcp", metricsAddr); err != nil {
					return fmt.Errorf("--metrics: %w", err) // a port held for now: a restart may mend it
				}
				defer metricsLn.Close()
			}
			key, err := readTerminalKey(keyFile)
			if err != nil {
				return err
			}
			// Whoever reads the key signs fares as this gate: say so when
			// others than its owner may.
			if st, err := os.Stat(keyFile); err == nil && st.Mode().Perm()&0o077 != 0 {
				slog.Warn("the terminal's key file can be read by others than its owner: anyone who reads it signs fare events as this gate (chmod 600)", "key", keyFile, "mode", fmt.Sprintf("%#o", st.Mode().Perm()))
			}
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			var faces *biometrics.Gate
			var faceFeed *galleryfeed.Feed
			if cam.dir != "" {
				var stopFaces func() error
				if faces, faceFeed, stopFaces, err = cam.open(ctx, ff, faceGalleryConfig{ID: id, Key: key, DataDir: dataDir,
					NATSURL: natsURL, NATSCA: natsCA, ClearingKeys: trusted}); err != nil {
					return err
				}
				defer stopFaces()
			}
			promReg := prometheus.NewRegistry()
			promReg.MustRegister(buildInfoGauge())
			if faceFeed != nil {
				promReg.MustRegister(newFaceGalleryCollector(faceFeed, id))
			}
			tcfg := terminal.Config{ID: id, Operator: operator, Stop: stop, Key: key, DataDir: dataDir,
				NATSURL: natsURL, NATSCA: natsCA, ClearingKeys: trusted, Deny: deny, Metrics: promReg, MinFreeBytes: int64(minFreeMiB) << 20, AcceptLostTaps: acceptLostTaps}
			if minFreeMiB < 0 {
				tcfg.MinFreeBytes = -1
			}
			if faces != nil {
				tcfg.Faces, tcfg.FaceHead = faces, faceFeed.SignedHead
			}
			t, err := terminal.Open(tcfg)
			if err != nil {
				return err
			}
			defer func() {
				// Bounded (a store whose disk refuses writes is given up):
				// said, not waited on for ever. A gate whose store was not
				// closed (no room for its closing flush) exits non-zero, so
				// a supervisor sees it stopped unwell.
				if err := t.Close(); err != nil {
					slog.Error("close the outbox", "err", err)
					if runErr == nil {
						runErr = err
					}
				}
			}()
			if metricsLn != nil {
				mux := http.NewServeMux()
				mux.Handle("GET /metrics", promhttp.HandlerFor(promReg, promhttp.HandlerOpts{}))
				mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
				mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
					// Ready to take taps: the gate decides offline, so only
					// its outbox's room counts.
					if err := t.Ready(); err != nil {
						http.Error(w, err.Error(), http.StatusServiceUnavailable)
						return
					}
					// A gate with no card reader takes only faces: with a
					// stale gallery it refuses every rider (an outside test
					// saw such a gate ready and its metrics silent).
					if faceFeed != nil && source == "none" {
						if st := faceFeed.Status(); !st.Fresh {
							http.Error(w, faceGalleryNotReady(st, ff.maxAge), http.StatusServiceUnavailable)
							return
						}
					}
					fmt.Fprintln(w, "ready")
				})
				srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
					WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
				go func() {
					if err := srv.Serve(metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
						slog.Error("metrics server stopped", "addr", metricsLn.Addr().String(), "err", err)
					}
				}()
				defer srv.Close()
			}
			done := make(chan error, 1)
			// Run ends early only on an error no retry mends (the streaming
			// half cannot work at all): the gate then stops too, rather
			// than take taps it will never send.
			go func() {
				err := t.Run(ctx)
				if err != nil && ctx.Err() == nil {
					slog.Error("streaming to clearing failed; stopping the gate", "err", err)
					cancel()
				}
				done <- err
			}()
			slog.Info("terminal running", "id", id, "public_key", "0x"+hex.EncodeToString(t.PublicKey()), "nats_user", t.NATSUser(), "outbox_pending", t.Pending(), "nats", fare.RedactURLList(natsURL))
			// A card listed while the gate was off must not pass in its
			// first moments: wait (bounded) for the lists to sync before
			// taking taps; offline, the stored copy decides.
			if listWait > 0 {
				select {
				case <-t.ListsSynced():
				case <-ctx.Done():
				case <-time.After(listWait):
					dv, dn := t.DenyListVersion()
					if ev, en := t.EnrolmentVersion(); dv == 0 && ev == 0 {
						// A new gate that never reached clearing, or one whose
						// last sync found both lists empty (version 0 looks
						// the same): nothing to decide from but the --deny seed.
						slog.Error("gate lists not synced with clearing within --list-wait, and this gate's copy of them is empty (never synced, or both lists were empty when it last did): every card not in the --deny seed passes until they sync (check --nats and the gate's network)", "wait", listWait)
					} else {
						slog.Warn("gate lists not synced with clearing within --list-wait: deciding from the stored copy until they are", "wait", listWait, "deny_version", dv, "denied", dn, "enrolment_version", ev, "enrolled", en)
					}
				}
			}
			camDone := make(chan error, 1)
			if faces != nil {
				src, err := cam.source(cmd.InOrStdin())
				if err != nil {
					cancel()
					<-done
					return err
				}
				go func() { camDone <- cameraTaps(ctx, t, src, cam.frames, cam.gate, cam.direction, cmd.OutOrStdout()) }()
			} else {
				camDone <- nil
			}
			var tapErr error
			switch source {
			case "stdin":
				tapErr = tapsFromLines(ctx, t, tapLineRules{cats: riderCategories, camera: faces != nil}, cmd.InOrStdin(), cmd.OutOrStdout())
			case "generate":
				tapErr = generateTaps(ctx, t, rate, count, cmd.OutOrStdout())
			case "none":
			default:
				tapErr = fmt.Errorf("--source %q: want stdin, generate or none", source)
			}
			// The camera runs until its stream ends (stdin) or the gate is
			// stopped (a directory).
			if camErr := <-camDone; tapErr == nil {
				tapErr = camErr
			}
			if tapErr != nil {
				cancel()
				<-done
				return tapErr
			}
			if ctx.Err() != nil {
				// Stopped, or the streaming half failed: say which.
				if err := <-done; err != nil {
					return err
				}
				done <- nil
			}
			// Keep streaming until the outbox drains or we are stopped.
			for t.Pending() > 0 && ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
			}
			if t.Pending() > 0 {
				slog.Warn("stopped with events still in the outbox; they are sent on the next start", "pending", t.Pending(), "confirmed", t.Confirmed())
			} else {
				slog.Info("outbox drained", "confirmed", t.Confirmed(), "rejected_by_clearing", t.RejectedEvents())
			}
			if n := t.RejectedEvents(); n > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%d event(s) rejected by clearing; see faregate terminal rejected --data %s\n", n, dataDir)
			}
			cancel()
			return <-done
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "terminal id (as registered)")
	f.StringVar(&operator, "operator", "", "operator id")
	f.StringVar(&stop, "stop", "", "GTFS stop_id the terminal serves")
	f.StringVar(&keyFile, "key", "terminal.key", "ed25519 seed `FILE`, as faregate terminal keygen makes it")
	f.StringVar(&dataDir, "data", "data/terminal", "outbox directory")
	f.DurationVar(&listWait, "list-wait", 5*time.Second, "at start, how long to wait for the deny and enrolment lists to sync with clearing before taking taps (offline, the stored copy then decides); 0: do not wait")
	f.StringVar(&natsURL, "nats", "nats://127.0.0.1:4222", "clearing's NATS URL")
	f.StringVar(&source, "source", "stdin", "card tap source: stdin, generate or none (with stdin or a --count, the gate exits once its input ends and its outbox has drained: while clearing is unreachable it waits, until stopped)")
	f.StringVar(&denyFile, "deny", "", "`FILE` of card tokens to refuse beside clearing's deny list (a static seed): one token per line, as a tap line carries it (no comma, space or invisible character); blank lines and lines beginning with # are skipped; at most "+byteSize(maxDenySeedSize)+"; a bad line is refused naming it (exit 64)")
	f.StringSliceVar(&clearingKeys, "clearing-key", nil, "clearing's confirmation public key, 0x hex (faregate clearing key); repeat while a key is rotated")
	f.StringSliceVar(&riderCategories, "rider-categories", documentedRiderCategories, "the rider categories (the feed's rider_category_id values) a stdin tap line may claim; a claim is never priced, the card's enrolment is")
	f.StringVar(&metricsAddr, "metrics", "", "serve the terminal's Prometheus metrics on this address, e.g. 127.0.0.1:9101: /metrics (outbox pending, sequences, last confirmation, NATS connected, gate-list versions and sync, free disk, refusals by reason), /healthz, /readyz (503, saying why, when the gate cannot take taps now: its outbox's disk below its margin, its outbox commits failing, its clock off clearing's, its taps rejected by clearing, or, with --source none and a camera, its face gallery stale); with a camera also the face gallery's freshness, age, subjects, version and refused values")
	f.StringVar(&natsCA, "nats-ca", "", "PEM file of the CA that signed the NATS server's TLS certificate (TLS on)")
	f.Float64Var(&rate, "rate", 10, "taps per second with --source generate")
	f.IntVar(&count, "count", 100, "taps in all with --source generate (0: until stopped)")
	f.IntVar(&minFreeMiB, "min-free-mib", 0, "free disk (MiB) the outbox keeps, at least 32: below it taps are refused, not written into a full disk (0: 64 MiB, or a quarter of a smaller disk but at least 32 MiB; negative: no check)")
	f.BoolVar(&acceptLostTaps, "accept-lost-taps", false, "open an outbox that lost accepted taps (it ends before its high-water mark) as it is, once they are given up: the loss is logged, the taps it still holds are sent and new ones numbered after them; for one start (command line only, never from the environment)")
	markCommandLineOnly(f, "accept-lost-taps")
	cam.register(f)
	ff.register(f)
	for _, n := range []string{"id", "operator", "stop", "clearing-key"} {
		_ = cmd.MarkFlagRequired(n)
	}
	cmd.AddCommand(newTerminalKeygenCmd(), newTerminalRejectedCmd(), newTerminalGiveUpCmd())
	return cmd
}

func newTerminalKeygenCmd() *cobra.Command {
	var id, operator, stop, keyFile string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Create (or read) a terminal key and print its registry entry, with the key's signature of it",
		Example: "  faregate terminal keygen --key t1.key --id t1 --operator metro --stop S1 > t1.json\n" +
			"  # the entry is one object of the registry's \"terminals\" array: join the gates' entries\n" +
			"  # with commas inside it (as deploy/setup.sh does), or register it with faregate ledger register-terminals",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// An entry the registry would refuse is not printed, nor its key made.
			for _, f := range []struct{ flag, v string }{{"--id", id}, {"--operator", operator}, {"--stop", stop}} {
				if err := fare.ValidateID(f.v); err != nil {
					return usageErrorf("%s %q: %v", f.flag, f.v, err)
				}
			}
			// A key file there already is read whole: it must be a key
			// file's size (not a device that never ends).
			if err := checkInputFile("--key", keyFile, maxKeyFileSize); err != nil {
				return err
			}
			key, err := terminal.LoadOrCreateKey(keyFile)
			if err != nil {
				return err
			}
			// The key signs its own registration, so that no other
			// operator can register it (clearing follows a registration
			// only with this proof).
			entry, err := clearing.NewTerminalEntry(key, id, operator, stop)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			if err := enc.Encode(entry); err != nil {
				return err
			}
			user, err := fare.NATSUserKey(key.Public().(ed25519.PublicKey), id)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "public key: 0x%x\n", []byte(entry.PublicKey))
			fmt.Fprintf(cmd.ErrOrStderr(), "NATS user (derived from the key): %s\n", user)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "terminal id")
	cmd.Flags().StringVar(&operator, "operator", "", "operator id")
	cmd.Flags().StringVar(&stop, "stop", "", "stop id")
	cmd.Flags().StringVar(&keyFile, "key", "terminal.key", "ed25519 seed file (created if missing)")
	// Without them the entry names no terminal and cannot be registered.
	for _, n := range []string{"id", "operator", "stop"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

// checkRiderCategories checks --rider-categories: at least one, each a
// rider_category_id (no spaces, not empty).
func checkRiderCategories(cats []string) error {
	if len(cats) == 0 {
		return usageErr("--rider-categories: give at least one rider category")
	}
	for _, c := range cats {
		if c == "" || strings.ContainsFunc(c, unicode.IsSpace) {
			return usageErrorf("--rider-categories: %q is not a rider category id", c)
		}
	}
	return nil
}

// notTapText says whether r has no place in a tap line: a control
// character (but tab) or an invisible one (a zero-width space in a token
// would make another card of the same printed token).
func notTapText(r rune) bool {
	return (unicode.IsControl(r) && r != '\t') || unicode.Is(unicode.Cf, r)
}

// checkTapToken checks a card token as the gate takes it from a tap line:
// 1 to fare.MaxTokenLen bytes of UTF-8, no space, control or invisible
// character. The --deny seed's tokens are held to it too: a token no tap
// can carry refuses no card.
func checkTapToken(tok string) error {
	switch {
	case tok == "":
		return fmt.Errorf("empty token: a card's token is 1 to %d bytes of UTF-8", fare.MaxTokenLen)
	case !utf8.ValidString(tok):
		return fmt.Errorf("token %q: not UTF-8 (a card's token is 1 to %d bytes of UTF-8)", tok, fare.MaxTokenLen)
	case len(tok) > fare.MaxTokenLen:
		return fmt.Errorf("token of %d bytes: a card's token is 1 to %d bytes of UTF-8", len(tok), fare.MaxTokenLen)
	}
	if i := strings.IndexFunc(tok, func(r rune) bool { return unicode.IsSpace(r) || notTapText(r) }); i >= 0 {
		return fmt.Errorf("space, control or invisible character %q at byte %d of the token", []rune(tok[i:])[0], i)
	}
	return nil
}

// readDenySeed reads a terminal's --deny seed: one card token per line,
// each held to checkTapToken; blank lines and lines beginning with # (a
// comment, as on a tap line) are skipped, and a UTF-8 byte order mark
// before the first line is dropped. A line that is not one token (two
// tokens, a comma-separated list, a token no tap can carry) is a usage
// error naming the file and the line: a seed read wrongly refuses other
// cards than meant, and says nothing.
func readDenySeed(path string) (terminal.TokenSet, error) {
	b, err := readInputFile("--deny", path, maxDenySeedSize)
	if err != nil {
		return nil, err
	}
	deny := terminal.TokenSet{}
	n := 0
	for line := range strings.Lines(strings.TrimPrefix(string(b), "\ufeff")) {
		n++
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if f := strings.Fields(line); len(f) > 1 {
			return nil, usageErrorf("--deny %s line %d: %d tokens on one line: the file holds one card token per line", path, n, len(f))
		}
		if i := strings.IndexAny(line, ",;"); i >= 0 {
			return nil, usageErrorf("--deny %s line %d: %q at byte %d: the file holds one card token per line, not a list", path, n, line[i], i)
		}
		if err := checkTapToken(line); err != nil {
			return nil, usageErrorf("--deny %s line %d: %v", path, n, err)
		}
		deny[line] = struct{}{}
	}
	return deny, nil
}

// parseTapLine reads "entry|exit|validate card|face TOKEN [RIDER_CATEGORY]
// [frames=FILE,...]": the frames are the camera's pictures of whoever
// presents a card at a camera gate (read here; see terminal.Tap.Frames). A
// claimed category must be one of cats (it is never priced: the gate puts
// the card's enrolment into the event).
func parseTapLine(line string, rules tapLineRules) (terminal.Tap, error) {
	cats := rules.cats
	f := strings.Fields(line)
	var frames [][]byte
	if n := len(f); n > 0 && strings.HasPrefix(f[n-1], "frames=") {
		if !rules.camera {
			// Nothing would look at them, and a path read for nothing
			// (a FIFO, a device) could hold up the gate.
			return terminal.Tap{}, errors.New("frames=: this gate has no camera (--camera) to compare them with")
		}
		for _, p := range strings.Split(strings.TrimPrefix(f[n-1], "frames="), ",") {
			b, err := readFrameFile(p)
			if err != nil {
				return terminal.Tap{}, fmt.Errorf("frames: %w", err)
			}
			frames = append(frames, b)
		}
		f = f[:n-1]
	}
	if len(f) < 3 || len(f) > 4 {
		return terminal.Tap{}, fmt.Errorf("want \"DIRECTION MEDIA TOKEN [RIDER_CATEGORY] [frames=FILE,...]\", got %d fields", len(f))
	}
	if err := checkTapToken(f[2]); err != nil {
		return terminal.Tap{}, err
	}
	tap := terminal.Tap{Gate: "g1", Token: f[2], Frames: frames}
	switch f[0] {
	case "entry":
		tap.Direction = fare.Entry
	case "exit":
		tap.Direction = fare.Exit
	case "validate":
		tap.Direction = fare.Validate
	default:
		return tap, fmt.Errorf("direction %q: want entry, exit or validate", f[0])
	}
	switch f[1] {
	case "card":
		tap.Media = fare.Card
	case "face":
		return tap, fmt.Errorf("a face is what the gate's camera sees (--camera), not a subject id on a tap line")
	default:
		return tap, fmt.Errorf("media %q: want card or face", f[1])
	}
	if len(f) == 4 {
		if !slices.Contains(cats, f[3]) {
			return tap, fmt.Errorf("rider category %q: not one of %s (--rider-categories); the gate prices by the card's enrolment, never by a claim",
				f[3], strings.Join(cats, ", "))
		}
		tap.RiderCategory = f[3]
	}
	return tap, nil
}

// tapLineRules is what a stdin tap line may say at this gate: the rider
// categories it may claim, and whether it may carry camera frames.
type tapLineRules struct {
	cats   []string
	camera bool
}

// The bounds of --rate with --source generate: beyond them the tap ticker's
// interval is 0 or overflows.
const (
	minGenerateRate = 0.001
	maxGenerateRate = 100000.0
)

// maxTapLine bounds a tap line: a longer one is refused by its number and
// skipped, and the lines after it are read as usual.
const maxTapLine = 4096

func tapsFromLines(ctx context.Context, t *terminal.Terminal, rules tapLineRules, r io.Reader, w io.Writer) error {
	// Lines are read by a goroutine of their own, so that a stop (SIGTERM)
	// is not held up by a read of standard input that waits for a line; it
	// is left blocked in the read as the process ends.
	type tapLine struct {
		raw  []byte
		long int
		err  error
	}
	lines := make(chan tapLine)
	go func() {
		br := bufio.NewReaderSize(r, maxTapLine+1)
		for {
			raw, long, err := readTapLine(br)
			select {
			case lines <- tapLine{raw, long, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	n := 0
	for {
		var l tapLine
		select {
		case <-ctx.Done():
			return nil
		case l = <-lines:
		}
		raw, long, err := l.raw, l.long, l.err
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tap lines: after line %d: %w", n, err)
		}
		n++
		if long > 0 {
			fmt.Fprintf(w, "line %d: %d bytes, over the %d-byte limit of a tap line: skipped\n", n, long, maxTapLine)
			continue
		}
		line := strings.TrimSpace(string(raw))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// Control characters, and invisible ones (a zero-width space in a
		// token would make another card of the same printed token).
		if i := strings.IndexFunc(line, notTapText); i >= 0 {
			fmt.Fprintf(w, "line %d: control or invisible character %q at byte %d: a tap line is printable text\n", n, []rune(line[i:])[0], i)
			continue
		}
		tap, err := parseTapLine(line, rules)
		if err != nil {
			fmt.Fprintf(w, "line %d: %v\n", n, err)
			continue
		}
		ev, err := t.Tap(ctx, tap)
		if err != nil {
			fmt.Fprintf(w, "line %d: %v\n", n, err)
			continue
		}
		// The category is the one the card's enrolment gives (the gate's
		// copy of clearing's enrolments), never the line's claim.
		cat := ev.RiderCategory
		if cat == "" {
			cat = "default"
		}
		if ev.Face != nil {
			fmt.Fprintln(w, describeFaceTap(ev)+" category="+cat)
		} else {
			fmt.Fprintf(w, "%s seq=%d%s %s %s category=%s\n", ev.ID, ev.Sequence, provisional(t), ev.Decision, ev.Reason, cat)
		}
		if ev.Reason == fare.FaceBadFrame {
			sayBadFrames(w, n, line, tap.Frames)
		}
	}
}

// sayBadFrames names, for tap line n (line) refused as face-bad-frame,
// which of its frames= files could not be read and why, as a camera gate
// says it (an outside test got the reason alone for a JPEG cut short).
func sayBadFrames(w io.Writer, n int, line string, frames [][]byte) {
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return
	}
	names := strings.Split(strings.TrimPrefix(fields[len(fields)-1], "frames="), ",")
	for i, b := range frames {
		if why := frameProblem(b); why != "" && i < len(names) {
			fmt.Fprintf(w, "line %d: frame %s: %s\n", n, names[i], why)
		}
	}
}

// provisional marks a sequence a new outbox took before clearing said
// where this terminal's sequence stands: it may yet be renumbered (the
// event id stays; see terminal/anchor.go).
func provisional(t *terminal.Terminal) string {
	if t != nil && t.Unanchored() {
		return "(provisional)"
	}
	return ""
}

// readTapLine reads one line without its newline. A line over maxTapLine
// bytes is read to its end and dropped: long is then its length. err is
// io.EOF once there is nothing left.
func readTapLine(br *bufio.Reader) (line []byte, long int, err error) {
	total := 0
	for {
		chunk, err := br.ReadSlice('\n')
		total += len(chunk)
		if total <= maxTapLine+1 { // +1: the newline
			line = append(line, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && total == 0 {
			return nil, 0, err
		}
		body := total
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			body--
		}
		if body > maxTapLine {
			return nil, body, nil
		}
		return bytes.TrimSuffix(line, []byte("\n")), 0, nil
	}
}

func generateTaps(ctx context.Context, t *terminal.Terminal, rate float64, count int, w io.Writer) error {
	if rate <= 0 {
		return fmt.Errorf("--rate %v: must be positive", rate)
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	written := 0
	for i := 0; count == 0 || i < count; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		tap := terminal.Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: fmt.Sprintf("card-%06d", rand.IntN(100000)), RiderCategory: "adult"}
		if _, err := t.Tap(ctx, tap); err != nil {
			if errors.Is(err, terminal.ErrDiskFull) {
				fmt.Fprintf(w, "tap refused: %v\n", err) // the gate stays up
				continue
			}
			return err
		}
		written++
	}
	fmt.Fprintf(w, "%d taps written to the outbox\n", written)
	return nil
}

// parseClearingKeys reads --clearing-key values: 32-byte ed25519 public
// keys in hex, with or without 0x.
func parseClearingKeys(vals []string) ([]ed25519.PublicKey, error) {
	if len(vals) == 0 {
		return nil, fmt.Errorf("--clearing-key is required: the terminal acts only on confirmations signed by clearing (faregate clearing key prints it)")
	}
	out := make([]ed25519.PublicKey, 0, len(vals))
	for _, v := range vals {
		b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(v), "0x"))
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("--clearing-key %q: want %d bytes in 0x hex", v, ed25519.PublicKeySize)
		}
		out = append(out, ed25519.PublicKey(b))
	}
	return out, nil
}

func newTerminalRejectedCmd() *cobra.Command {
	var dataDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "rejected",
		Short: "List the events clearing rejected for good, kept in the terminal's dead-letter store",
		Long: `List the events clearing rejected for good (wrong stop, revoked terminal, bad
signature...). The terminal keeps each with clearing's reason in a dead-letter
area of its store; run this while the terminal agent is stopped.`,
		Example: "  faregate terminal rejected --data data/terminal",
		RunE: func(cmd *cobra.Command, args []string) error {
			dls, err := terminal.ReadDeadLetters(dataDir)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(dls)
			}
			if len(dls) == 0 {
				fmt.Fprintln(w, "no rejected events")
				return nil
			}
			for _, dl := range dls {
				line := fmt.Sprintf("sequence %d  rejected %s  reason %s", dl.Sequence, dl.RejectedAt.Format(time.RFC3339), dl.Reason)
				if raw, err := hex.DecodeString(strings.TrimPrefix(dl.Event, "0x")); err == nil {
					if ev, err := fare.Decode(raw); err == nil {
						line += fmt.Sprintf("  event %s  %s %s  stop %s  at %s", ev.ID, ev.Direction, ev.Media, ev.Stop, ev.DeviceTime.Format(time.RFC3339))
					}
				}
				if dl.Mismatch {
					line += "  (clearing holds another message under this sequence)"
				}
				fmt.Fprintln(w, line)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "data/terminal", "the terminal's outbox directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// natsSafeWithoutCA reports whether a gate without --nats-ca keeps its
// events off the network in the clear: every URL of urls (comma-separated)
// names a loopback host or asks for TLS (tls://): plaintext there does not
// cross a network. A URL without a scheme is nats://, as nats.go reads it.
func natsSafeWithoutCA(urls string) bool {
	for _, raw := range strings.Split(urls, ",") {
		u, err := parseNATSURL(raw)
		if err != nil {
			return false
		}
		if u.Scheme == "tls" {
			continue
		}
		host := u.Hostname()
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return false
		}
	}
	return true
}

func newTerminalGiveUpCmd() *cobra.Command {
	var dataDir, keyFile, id, operator, stop string
	var seq uint64
	cmd := &cobra.Command{
		Use:   "give-up",
		Short: "Give up an outbox entry the disk damaged, so the outbox drains past it",
		Long: `Give up an outbox entry the gate's disk damaged. Such an entry no longer
verifies with the terminal's key: the gate never sends it (it logs
"corrupt-entry" and counts faregate_terminal_outbox_corrupt_entries_total), and
clearing, which confirms only unbroken runs of sequences, keeps every later
tap in the outbox. In its place the gate signs, under the same sequence, a
denied tap of reason outbox-entry-damaged, charged to nobody, naming the
operator and stop the gate last ran with (recorded in its outbox); the
damaged bytes are saved in --data (damaged-entry-SEQ, owner-only: they may
hold a card token; delete the file once the tap is recovered). If clearing
turns out to hold the tap itself (it applied it before the disk damaged it),
the gate drops the stand-in.

Run it while the terminal agent is stopped. A whole entry, a sequence that
is not pending, another key, terminal id, operator or stop are refused, as
is a store not closed cleanly (a crash): start the terminal once, which
repairs it safely, stop it, then give the entry up.`,
		Example: "  faregate terminal give-up --data data/terminal --key t1.key --id t1 --sequence 3",
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range []struct{ name, v string }{{"id", id}, {"key", keyFile}} {
				if f.v == "" {
					return usageErrorf("--%s is required", f.name)
				}
			}
			if seq == 0 {
				return usageErrorf("--sequence is required: the outbox entry to give up (the gate's log names it: outbox entry N is corrupt)")
			}
			for _, f := range []struct{ name, v string }{{"id", id}, {"operator", operator}, {"stop", stop}} {
				if f.v == "" {
					continue
				}
				if err := fare.ValidateID(f.v); err != nil {
					return usageErrorf("--%s %q: %v", f.name, f.v, err)
				}
			}
			key, err := readTerminalKey(keyFile)
			if err != nil {
				return err
			}
			ev, saved, err := terminal.GiveUpDamaged(terminal.Config{ID: id, Operator: operator, Stop: stop, Key: key, DataDir: dataDir}, seq)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "outbox entry %d given up: event %s, a denied tap of reason %s for operator %s at stop %s, takes its place; the damaged bytes are in %s (they may hold a card token: delete the file once the tap is recovered)\n",
				seq, ev.ID, terminal.ReasonEntryDamaged, ev.Operator, ev.Stop, saved)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "data/terminal", "the terminal's outbox directory")
	f.StringVar(&keyFile, "key", "", "the terminal's key file (required)")
	f.StringVar(&id, "id", "", "the terminal's id (required)")
	f.StringVar(&operator, "operator", "", "the terminal's operator (optional: the outbox records it; given, it must be that)")
	f.StringVar(&stop, "stop", "", "the terminal's stop (optional: the outbox records it; given, it must be that)")
	f.Uint64Var(&seq, "sequence", 0, "the outbox entry to give up (required)")
	return cmd
}
