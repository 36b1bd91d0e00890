package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/faregate/faregate/biometrics"
	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/biometrics/galleryfeed"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// A gate's camera: frames from a directory a camera writes into, or a
// stream of frames on standard input. Consecutive frames make one
// presentation, which the terminal decides (TapFace) like any tap.

// frameSource yields a camera's frames in order; name says where a frame
// came from, for messages.
type frameSource interface {
	next(ctx context.Context) (frame []byte, name string, err error)
}

// inProgressName says whether name is one a writer uses while a file is
// still being written (then renamed into place): not a frame yet.
func inProgressName(name string) bool {
	n := strings.ToLower(name)
	for _, suffix := range []string{".part", ".partial", ".tmp", ".temp", ".crdownload", ".swp", "~"} {
		if strings.HasSuffix(n, suffix) {
			return true
		}
	}
	return false
}

// dirFrames watches a directory for new frame files, oldest name first.
// Every regular file whose name does not start with a dot or end as a
// file still being written does (.part, .tmp, ~...) is a frame,
// whatever its extension (JPEG, PNG and descriptor frames are told apart
// by their content; anything else is refused by name, not left unseen on
// disk). Each file is read once and then removed (a frame is biometric
// data: it is not kept past its decision) or, with keep, moved into
// DIR/.decided (a dot name: a restarted gate does not decide it again, as
// it would a file left in place, charging a rider twice). A file is taken once
// it has not changed for settle (a camera still writing it would be read
// half-written); a camera should write under a dot name and rename into
// place. A name used again for a new frame is a new frame.
type dirFrames struct {
	dir  string
	keep bool
	// seen stamps each file name taken, as it was when taken: the same
	// name with another size or time is a new frame. Names gone from the
	// directory are forgotten.
	seen   map[string]fileStamp
	queue  []string
	poll   time.Duration
	settle time.Duration
}

// fileStamp is what tells one file under a name from the next.
type fileStamp struct {
	size int64
	mod  time.Time
}

// decidedDir is where --camera-keep moves a decided frame, in the camera
// directory.
const decidedDir = ".decided"

func newDirFrames(dir string, keep bool) (*dirFrames, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("--camera: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("--camera %s: not a directory (use - for frames on standard input)", dir)
	}
	return &dirFrames{dir: dir, keep: keep, seen: map[string]fileStamp{}, poll: 50 * time.Millisecond, settle: 200 * time.Millisecond}, nil
}

func (d *dirFrames) next(ctx context.Context) ([]byte, string, error) {
	for len(d.queue) == 0 {
		ents, err := os.ReadDir(d.dir)
		if err != nil {
			return nil, "", fmt.Errorf("camera directory: %w", err)
		}
		present := make(map[string]bool, len(ents))
		for _, e := range ents {
			name := e.Name()
			if !e.Type().IsRegular() || strings.HasPrefix(name, ".") || inProgressName(name) {
				continue
			}
			present[name] = true
			fi, err := e.Info()
			if err != nil {
				continue // gone since the listing
			}
			st := fileStamp{size: fi.Size(), mod: fi.ModTime()}
			if old, ok := d.seen[name]; ok && old == st || time.Since(st.mod) < d.settle {
				continue // taken already, or still being written
			}
			d.seen[name] = st
			d.queue = append(d.queue, name)
		}
		for name := range d.seen {
			if !present[name] {
				delete(d.seen, name)
			}
		}
		slices.Sort(d.queue)
		if len(d.queue) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(d.poll):
		}
	}
	name := d.queue[0]
	d.queue = d.queue[1:]
	path := filepath.Join(d.dir, name)
	b, err := readFrameFile(path)
	if !d.keep {
		if rerr := os.Remove(path); rerr == nil {
			delete(d.seen, name)
		}
	} else if merr := os.MkdirAll(filepath.Join(d.dir, decidedDir), 0o700); merr == nil {
		if rerr := os.Rename(path, filepath.Join(d.dir, decidedDir, name)); rerr == nil {
			delete(d.seen, name)
		}
	}
	if err != nil {
		return nil, name, err
	}
	return b, name, nil
}

// readFrameFile reads a frame file of at most biometrics.DefaultMaxFrame bytes.
func readFrameFile(path string) ([]byte, error) {
	// Opened without blocking and read only if it is a regular file: a
	// FIFO or a device named as a frame must not hold up the gate.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s): a frame is a picture file", path, fi.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, biometrics.DefaultMaxFrame+1))
	if err != nil {
		return nil, err
	}
	if len(b) > biometrics.DefaultMaxFrame {
		return nil, fmt.Errorf("%s: %w (more than %d bytes)", path, biometrics.ErrFrameTooLarge, biometrics.DefaultMaxFrame)
	}
	return b, nil
}

// streamFrames reads a stream of frames (MJPEG, PNGs, descriptor frames).
type streamFrames struct {
	fr *biometrics.FrameReader
	n  int
}

func (s *streamFrames) next(ctx context.Context) ([]byte, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	b, err := s.fr.Next()
	s.n++
	return b, fmt.Sprintf("frame %d", s.n), err
}

// cameraGroupGap is how far apart the frames of one presentation may come:
// a partial presentation whose next frame does not come within it is
// dropped, not decided with the frames of whoever comes next (an outside
// test saw a rider's leftover frame, with --camera-frames 2, let a
// stranger through as that rider, who was charged).
const cameraGroupGap = 2 * time.Second

// presentation gathers the frames of one presentation at a camera gate.
type presentation struct {
	frames [][]byte
	names  []string
	began  time.Time // when its first frame came
}

// stale reports whether a partial presentation's next frame is overdue
// at now.
func (p *presentation) stale(now time.Time) bool {
	return len(p.frames) > 0 && now.Sub(p.began) > cameraGroupGap
}

// add takes a frame that came at now.
func (p *presentation) add(b []byte, name string, now time.Time) {
	if len(p.frames) == 0 {
		p.began = now
	}
	p.frames, p.names = append(p.frames, b), append(p.names, name)
}

// drop forgets the frames (biometric data: none is kept longer than its
// presentation) and says how many there were.
func (p *presentation) drop() int {
	n := len(p.frames)
	clear(p.frames)
	p.frames, p.names = p.frames[:0], p.names[:0]
	return n
}

// cameraTaps decides presentations of frames per presentation from src
// at gate, until the source ends or ctx does; a presentation cut short
// by the end of the stream is decided with what it has. A frame that
// cannot be read is reported and skipped, and so are the frames of its
// presentation before it, as is a presentation whose next frame does not
// come within cameraGroupGap; a stream that cannot be resynchronised ends
// the camera with an error.
func cameraTaps(ctx context.Context, t *terminal.Terminal, src frameSource, frames int, gate string, dir fare.Direction, w io.Writer) error {
	return presentFrames(ctx, src, frames, w, func(group [][]byte, names []string) error {
		ev, err := t.TapFace(ctx, terminal.FaceTap{Gate: gate, Direction: dir, Frames: group})
		if err != nil {
			if errors.Is(err, terminal.ErrDiskFull) {
				fmt.Fprintf(w, "camera tap refused: %v\n", err) // the gate stays up
				return nil
			}
			return err
		}
		fmt.Fprintln(w, describeFaceTap(ev))
		if ev.Reason == fare.FaceBadFrame {
			// Say which frame and why: a broken camera is not a bad
			// presentation.
			for i, b := range group {
				if why := frameProblem(b); why != "" {
					fmt.Fprintf(w, "camera %s: %s\n", names[i], why)
				} else if _, ok, _ := biometrics.ParseDescriptorFrame(b); ok {
					// A well-formed descriptor frame is refused by a gate
					// that takes pictures only.
					fmt.Fprintf(w, "camera %s: a descriptor frame, which a gate takes only when started with --camera-descriptors\n", names[i])
				}
			}
		}
		return nil
	})
}

// presentFrames gathers src's frames into presentations of frames each
// and hands each to decide (cameraTaps), until the source ends or ctx
// does: what cameraTaps says of presentations, without the gate.
func presentFrames(ctx context.Context, src frameSource, frames int, w io.Writer, decide func(group [][]byte, names []string) error) error {
	var p presentation
	dropPartial := func(why string) {
		if n := p.drop(); n > 0 {
			fmt.Fprintf(w, "camera: a presentation of %d of %d frames dropped, not decided: %s\n", n, frames, why)
		}
	}
	decideAll := func() error {
		if len(p.frames) == 0 {
			return nil
		}
		err := decide(p.frames, p.names)
		p.drop()
		return err
	}
	for {
		nctx, cancel := ctx, context.CancelFunc(func() {})
		if len(p.frames) > 0 {
			// A source that waits (a folder) gives up when the
			// presentation's next frame is overdue.
			nctx, cancel = context.WithDeadline(ctx, p.began.Add(cameraGroupGap))
		}
		b, name, err := src.next(nctx)
		cancel()
		if ctx.Err() == nil && p.stale(time.Now()) {
			dropPartial(fmt.Sprintf("its next frame did not come within %s", cameraGroupGap))
			if err != nil && nctx.Err() != nil {
				continue // the wait for it ended: no frame came
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return decideAll()
		case ctx.Err() != nil:
			return nil
		case err != nil:
			dropPartial(fmt.Sprintf("frame %s could not be read", name))
			if s, ok := src.(*streamFrames); ok {
				// One corrupt frame must not stop the gate: skip to the
				// next frame's start and go on.
				skipped, rerr := s.fr.Resync()
				fmt.Fprintf(w, "camera stream %s: %v (skipped; %d bytes to the next frame)\n", name, err, skipped)
				if errors.Is(rerr, io.EOF) {
					return decideAll()
				}
				if rerr != nil {
					return fmt.Errorf("camera stream: %w", rerr)
				}
				continue
			}
			fmt.Fprintf(w, "camera %s: %v (skipped)\n", name, err)
			continue
		}
		p.add(b, name, time.Now())
		if len(p.frames) >= frames {
			if err := decideAll(); err != nil {
				return err
			}
		}
	}
}

// frameProblem says why a frame cannot be read as a descriptor frame, a
// JPEG or a PNG ("" when its header reads as one of them).
func frameProblem(b []byte) string {
	if _, ok, err := biometrics.ParseDescriptorFrame(b); ok {
		if err != nil {
			return err.Error()
		}
		return ""
	}
	var format string
	var config func(io.Reader) (image.Config, error)
	var decode func(io.Reader) (image.Image, error)
	switch {
	case len(b) == 0:
		return "an empty frame"
	case bytes.HasPrefix(b, []byte{0xff, 0xd8}):
		format, config, decode = "JPEG", jpeg.DecodeConfig, jpeg.Decode
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		format, config, decode = "PNG", png.DecodeConfig, png.Decode
	default:
		return fmt.Sprintf("%d bytes that are no JPEG, PNG or descriptor frame (they begin % x)", len(b), b[:min(len(b), 4)])
	}
	c, err := config(bytes.NewReader(b))
	if err != nil {
		return fmt.Sprintf("a %s whose header does not decode: %v", format, err)
	}
	// The header is read before the pixels: a picture that claims to be
	// huge, or would decode to more than the gate's budget, is named, not
	// decoded (the recognizer refused it the same way).
	if err := biometrics.CheckDecodeBudget(b, maxCheckedPixels); errors.Is(err, biometrics.ErrImageTooLarge) {
		return fmt.Sprintf("a %s of %dx%d pixels, more than a gate decodes (%v)", format, c.Width, c.Height, err)
	}
	if _, err := decode(bytes.NewReader(b)); err != nil {
		return fmt.Sprintf("a %dx%d %s that does not decode: %v", c.Width, c.Height, format, err)
	}
	return ""
}

// maxCheckedPixels bounds the pictures a gate decodes (frameProblem and
// its recognizer): a gate camera's frame is a few megapixels (4K is 8.3), and
// a 40-megapixel frame cost a gate over a gigabyte and seconds of a core.
const maxCheckedPixels = 12_000_000

// describeFaceTap is the line a camera tap prints: the decision and the
// evidence, and what to do when refused.
func describeFaceTap(ev fare.Event) string {
	f := ev.Face
	if f == nil {
		return fmt.Sprintf("%s seq=%d %s %s", ev.ID, ev.Sequence, ev.Decision, ev.Reason)
	}
	dist := func(x float32) string {
		if math.IsInf(float64(x), 1) {
			return "none"
		}
		return fmt.Sprintf("%.3f", x)
	}
	subject := f.Subject
	if subject == "" {
		subject = "none"
	}
	line := fmt.Sprintf("%s seq=%d %s %s face %s %s=%s subject=%s distance=%s margin=%s frames=%d model=%s policy=%s",
		ev.ID, ev.Sequence, ev.Decision, ev.Reason, f.Mode, ev.Media, ev.MediaToken, subject, dist(f.Distance), dist(f.Margin), f.Frames, f.Model, f.Policy)
	if ev.Decision == fare.Denied {
		line += " (tap a card)"
	}
	return line
}

// cameraFlags are the camera's flags of `faregate terminal`.
type cameraFlags struct {
	dir       string
	keep      bool
	frames    int
	gate      string
	dirName   string
	direction fare.Direction
	models    string
	policy    string
	cnn       bool
	// descriptors takes .fgd descriptor frames beside images.
	descriptors bool
}

func (c *cameraFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.dir, "camera", "", "the gate's camera: a directory it writes frames into (JPEG, PNG, .fgd descriptor frames), or - for a frame stream on standard input")
	fs.BoolVar(&c.keep, "camera-keep", false, "keep frame files after their decision, moved into DIR/.decided (by default they are removed: a frame is biometric data)")
	fs.IntVar(&c.frames, "camera-frames", 0, "frames per presentation (default: the policy's frames)")
	fs.StringVar(&c.gate, "camera-gate", "cam1", "gate id the camera's taps carry")
	fs.StringVar(&c.dirName, "camera-direction", "entry", "direction of the camera's taps: entry, exit or validate")
	fs.StringVar(&c.models, "models", "", "dlib model directory (default $"+biometrics.ModelsEnv+", ./models, ../shared/models)")
	fs.StringVar(&c.policy, "face-policy", "", "the gate's operating point, a policy `FILE` from faregate face calibrate (default: the built-in conservative point)")
	fs.BoolVar(&c.cnn, "camera-cnn", false, "detect faces with dlib's MMOD CNN (about 1 s a frame) instead of HOG")
	fs.BoolVar(&c.descriptors, "camera-descriptors", false, "take .fgd descriptor frames too, from a camera that computes descriptors on board (off: such a frame is refused, face-bad-frame, for whoever can write the camera's frames could present an enrolled rider's template)")
}

// check validates the camera flags against the card source.
func (c *cameraFlags) check(source string) error {
	if c.dir == "" {
		if source == "none" {
			return errors.New("--source none: a gate with no card reader needs a camera (--camera)")
		}
		return nil
	}
	if c.dir == "-" && source == "stdin" {
		return errors.New("--camera - reads frames from standard input: take card taps from --source generate or none")
	}
	if c.dir != "-" {
		// Checked before anything starts: a mistyped path should not
		// surface only after the models, the gallery and NATS.
		if fi, err := os.Stat(c.dir); err != nil {
			return fmt.Errorf("--camera %s: %w (want the directory the camera writes frames into, or - for a stream on standard input)", c.dir, err)
		} else if !fi.IsDir() {
			return fmt.Errorf("--camera %s is not a directory (want the directory the camera writes frames into, or - for a stream on standard input)", c.dir)
		}
	}
	if c.frames < 0 || c.frames > 255 {
		return fmt.Errorf("--camera-frames %d: want 1 to 255", c.frames)
	}
	if strings.ContainsAny(c.gate, ". *>") || c.gate == "" {
		return fmt.Errorf("--camera-gate %q: want an id of letters, digits, - and _", c.gate)
	}
	switch c.dirName {
	case "entry":
		c.direction = fare.Entry
	case "exit":
		c.direction = fare.Exit
	case "validate":
		c.direction = fare.Validate
	default:
		return fmt.Errorf("--camera-direction %q: want entry, exit or validate", c.dirName)
	}
	return nil
}

// open loads the models, the policy and the gate's gallery (following
// clearing's bucket) and returns the gate's matcher and the gallery; stop
// ends the gallery's follower and closes the recognizer.
func (c *cameraFlags) open(ctx context.Context, ff faceGalleryFlags, gc faceGalleryConfig) (*biometrics.Gate, *galleryfeed.Feed, func() error, error) {
	policy := gallery.DefaultPolicy()
	if c.policy != "" {
		p, cal, err := loadPolicyFile(c.policy)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--face-policy: %w", err)
		}
		policy = p
		if why := unmeasuredGallery(p.MaxGallery, p, cal); why != "" { // only without a calibration
			slog.Warn("--face-policy "+c.policy+": no calibration recorded, and "+why, "max_gallery", p.MaxGallery)
		}
	}
	if c.frames == 0 {
		c.frames = max(policy.Frames, 1)
	}
	dir, err := biometrics.FindModelDir(c.models)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--camera needs the dlib models: %w", err)
	}
	rec, err := biometrics.New(biometrics.Config{ModelDir: dir, MaxPixels: maxCheckedPixels})
	if err != nil {
		return nil, nil, nil, err
	}
	gc.ModelID, gc.MaxAge = rec.ModelID(), ff.maxAge
	feed, stopFeed, err := openFaceGallery(ctx, gc)
	if err != nil {
		rec.Close()
		return nil, nil, nil, err
	}
	det := biometrics.HOG
	if c.cnn {
		det = biometrics.CNN
	}
	gate, err := biometrics.NewGate(biometrics.GateConfig{Recognizer: rec, Gallery: feed, Policy: policy, Detector: det, DescriptorFrames: c.descriptors})
	if err != nil {
		_ = stopFeed()
		rec.Close()
		return nil, nil, nil, err
	}
	stop := func() error {
		err := stopFeed()
		rec.Close()
		return err
	}
	return gate, feed, stop, nil
}

// source opens the camera's frames: the directory, or stdin for "-".
func (c *cameraFlags) source(stdin io.Reader) (frameSource, error) {
	if c.dir == "-" {
		return &streamFrames{fr: biometrics.NewFrameReader(stdin, 0)}, nil
	}
	return newDirFrames(c.dir, c.keep)
}
