package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/faregate/faregate/biometrics/galleryfeed"
	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// A terminal's face gallery: its share of clearing's face templates,
// followed from the FAREGATE_FACES bucket over a connection of its own
// (as the terminal's NATS user), kept encrypted in its data dir, and used
// only while fresh. The terminal package knows nothing of it: a
// *galleryfeed.Feed is a biometrics.GateGallery, which biometrics.NewGate
// matches against, and the Gate is the terminal's FaceMatcher:
//
//	var ff faceGalleryFlags
//	ff.register(cmd.Flags())
//	...
//	feed, stop, err := openFaceGallery(ctx, faceGalleryConfig{ID: id, Key: key, DataDir: dataDir,
//		NATSURL: natsURL, NATSCA: natsCA, ClearingKeys: trusted, ModelID: model, MaxAge: ff.maxAge})
//	defer stop()
//	gate, err := biometrics.NewGate(biometrics.GateConfig{Recognizer: r, Gallery: feed, Policy: p})
//	terminal.Config{..., Faces: gate}

// faceGalleryFlags are the face gallery's flags of `faregate terminal`.
type faceGalleryFlags struct {
	maxAge time.Duration
}

// minFaceGalleryMaxAge is the shortest --face-gallery-max-age: two of
// clearing's head intervals, so one late head does not make a connected
// gate refuse faces (an outside test's 10 s refused 6 presentations in 8).
const minFaceGalleryMaxAge = 2 * clearing.DefaultFaceHeadEvery

func (f *faceGalleryFlags) register(fs *pflag.FlagSet) {
	fs.DurationVar(&f.maxAge, "face-gallery-max-age", galleryfeed.DefaultMaxAge,
		"match faces only while clearing's last face gallery head is younger than this (it issues one every 30 s); "+
			"past it the gate decides by card, so it bounds how long an erasure can take to reach a gate that cannot hear from clearing (1m to 15m)")
}

// faceGalleryConfig is what openFaceGallery needs of the terminal.
type faceGalleryConfig struct {
	ID  string
	Key ed25519.PrivateKey
	// DataDir is the terminal's data dir: the copy goes in
	// DataDir/face-gallery.
	DataDir string
	// NATSURL and NATSCA are the terminal's NATS server and CA.
	NATSURL, NATSCA string
	// ClearingKeys are the --clearing-key values.
	ClearingKeys []ed25519.PublicKey
	// ModelID is the descriptor pipeline the gate's recognizer runs.
	ModelID string
	// MaxAge is --face-gallery-max-age (0: galleryfeed.DefaultMaxAge).
	MaxAge time.Duration
	Logger *slog.Logger
}

// openFaceGallery opens the terminal's copy of its face gallery (a gate
// started without the network has it, usable while fresh) and follows the
// bucket until ctx ends or stop is called. stop waits for the follower,
// closes its connection and returns the follower's error. A NATS server
// that cannot be reached is no error: the connection keeps trying and the
// gallery catches up when it gets through.
func openFaceGallery(ctx context.Context, cfg faceGalleryConfig) (feed *galleryfeed.Feed, stop func() error, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	feed, err = galleryfeed.Open(galleryfeed.Config{Terminal: cfg.ID, Key: cfg.Key, ClearingKeys: cfg.ClearingKeys,
		DataDir: cfg.DataDir, ModelID: cfg.ModelID, MaxAge: cfg.MaxAge, Logger: cfg.Logger})
	if err != nil {
		return nil, nil, err
	}
	ident, err := fare.NewNATSIdentity(cfg.Key, cfg.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("face gallery: %w", err)
	}
	opts := append(terminal.NATSOptions(ident, cfg.ID, cfg.NATSCA), nats.Name("faregate-face-gallery-"+cfg.ID),
		nats.MaxReconnects(-1), nats.ReconnectWait(time.Second), nats.RetryOnFailedConnect(true),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				cfg.Logger.Warn("face gallery: NATS refused a request", "err", err)
			}
		}))
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("face gallery: connect to NATS %s: %w", fare.RedactURLList(cfg.NATSURL), err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- feed.Run(runCtx, nc) }()
	var runErr error
	stopped := false
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
			nc.Close()
		}
		return runErr
	}
	return feed, stop, nil
}

// faceGalleryCollector exports a camera gate's face gallery gauges,
// labelled with its id: a gate whose copy went stale refuses every face
// (face-gallery-stale), which the gate lists' gauges do not show. One
// scrape reads the feed's status and refusals once each.
type faceGalleryCollector struct {
	feed                                   *galleryfeed.Feed
	fresh, age, version, subjects, refused *prometheus.Desc
}

// newFaceGalleryCollector describes feed's gauges for the gate id.
func newFaceGalleryCollector(feed *galleryfeed.Feed, id string) *faceGalleryCollector {
	l := prometheus.Labels{"terminal": id}
	return &faceGalleryCollector{
		feed: feed,
		fresh: prometheus.NewDesc("faregate_terminal_face_gallery_fresh",
			"1 while the gate's face gallery copy may be matched against (its head from clearing within --face-gallery-max-age); 0: every face is refused as face-gallery-stale.", nil, l),
		age: prometheus.NewDesc("faregate_terminal_face_gallery_age_seconds",
			"Age of the face gallery head the gate holds (0: none yet, and _fresh is 0). Alert well before --face-gallery-max-age.", nil, l),
		version: prometheus.NewDesc("faregate_terminal_face_gallery_version",
			"The version of the face gallery head the gate holds (0 before clearing's first face enrolment, or no head yet: see _age_seconds).", nil, l),
		subjects: prometheus.NewDesc("faregate_terminal_face_gallery_subjects",
			"Subjects in the gate's face gallery copy, by kind: face-only (1:N) or card holders (1:1).", []string{"kind"}, l),
		refused: prometheus.NewDesc("faregate_terminal_face_gallery_refused_total",
			"Face gallery values the gate refused since it started, by reason (untrusted signer, malformed, another gate's, a broken seal, another model's descriptors, stale, older, a mismatch): each is logged.", []string{"reason"}, l),
	}
}

// Describe implements prometheus.Collector.
func (c *faceGalleryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.fresh, c.age, c.version, c.subjects, c.refused} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *faceGalleryCollector) Collect(ch chan<- prometheus.Metric) {
	s, refused := c.feed.Status(), c.feed.Refusals()
	fresh := 0.0
	if s.Fresh {
		fresh = 1
	}
	ch <- prometheus.MustNewConstMetric(c.fresh, prometheus.GaugeValue, fresh)
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, s.Age.Seconds())
	ch <- prometheus.MustNewConstMetric(c.version, prometheus.GaugeValue, float64(s.HeadVersion))
	ch <- prometheus.MustNewConstMetric(c.subjects, prometheus.GaugeValue, float64(s.FaceOnly), "face_only")
	ch <- prometheus.MustNewConstMetric(c.subjects, prometheus.GaugeValue, float64(s.CardHolders), "card_holders")
	for _, reason := range galleryfeed.RefusalReasons() {
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(refused[reason]), reason)
	}
}

// faceGalleryNotReady says why a face-only gate is not ready.
func faceGalleryNotReady(s galleryfeed.Status, maxAge time.Duration) string {
	if s.HeadIssued.IsZero() { // version 0 is a head too: clearing's before any enrolment
		return "the face gallery has no head from clearing yet: every face is refused (face-gallery-stale) until the gate reaches clearing"
	}
	if maxAge == 0 {
		maxAge = galleryfeed.DefaultMaxAge
	}
	return fmt.Sprintf("the face gallery's head (version %d) is %s old, over --face-gallery-max-age %s: every face is refused (face-gallery-stale) until the gate reaches clearing", s.HeadVersion, s.Age.Round(time.Second), maxAge)
}
