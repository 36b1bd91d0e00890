package galleryfeed

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/faregate/faregate/fare"
)

// The copy at rest: three files in <DataDir>/face-gallery.
//
//	entries   magic "FGFE" | format 1 | count u32 | count x (key token[16] | length u32 | signed FaceEntry)
//	          | tombstones u32 | tombstones x (key token[16] | version u64) | sha256 of what precedes
//	head      magic "FGFH" | format 2 | length u32 | signed FaceHead (or none) | trusted keys u8 | keys x 32
//	          | retired keys u8 | keys x 32 | mac[32] | sha256 of what precedes
//	          (format 1, an earlier build's, has no mac)
//	position  where the copy stands in the bucket's stream (fare.GateFeedPosition, JSON), written
//	          after the other two: what the next feed resumes from (none, or unreadable: read whole)
//
// Nothing in the copy is taken on the disk's word: at Open every entry
// and the head are checked against clearing's keys again, and the trusted
// keys the head file lists (those the gate learnt from clearing's key
// rotations) count only under a mac keyed from the terminal's own key
// (HMAC-SHA256): whoever can write the data dir but lacks that key cannot
// add a key of their own, and with it a face under another rider's
// subject (an outside review did, the gate matching the forger's face as
// the victim).
//
// Entries are kept as clearing signed them: the templates sealed for this
// terminal (HPKE), so the file is encrypted at rest under the terminal's
// own key. A tombstone (a key token and the version it was erased at)
// holds no template: it refuses a replay of an older value. The entries
// file is written whole to entries.new, synced, the old file overwritten
// with zeros in place and synced, then renamed over it: a subject removed
// from the gallery is in no file afterwards, and on a file system that
// writes in place (ext4, xfs without reflinks) not in the old file's
// blocks either. A crash leaves one of the two files whole; the newer
// (entries.new) is read first.

const (
	copyDir     = "face-gallery"
	entriesFile = "entries"
	headFile    = "head"
	posFile     = "position"
	newSuffix   = ".new"
	copyFormat  = 1
	// headFormat is the head file's: 2 since it carries a mac.
	headFormat = 2
	macSize    = sha256.Size
)

var (
	entriesMagic = []byte("FGFE")
	headMagic    = []byte("FGFH")
	errCopy      = errors.New("face gallery copy: corrupt")
)

// storedEntry is one entry of the copy.
type storedEntry struct {
	key    fare.FaceKeyToken
	signed []byte
}

// storedCopy is what the two files hold.
type storedCopy struct {
	entries    []storedEntry
	tombs      map[fare.FaceKeyToken]uint64
	headSigned []byte
	trusted    []ed25519.PublicKey
	retired    []ed25519.PublicKey
	// macOK: the head file's mac verified (trusted may be taken).
	macOK bool
}

func encodeEntries(entries []storedEntry, tombs map[fare.FaceKeyToken]uint64) []byte {
	n := 0
	for _, e := range entries {
		n += fare.FaceKeyTokenSize + 4 + len(e.signed)
	}
	b := make([]byte, 0, len(entriesMagic)+1+8+n+len(tombs)*24+sha256.Size)
	b = append(b, entriesMagic...)
	b = append(b, copyFormat)
	b = binary.BigEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = append(b, e.key[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(e.signed)))
		b = append(b, e.signed...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(tombs)))
	for k, v := range tombs {
		b = append(b, k[:]...)
		b = binary.BigEndian.AppendUint64(b, v)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// reader reads a file's fields, remembering the first shortfall.
type reader struct {
	b   []byte
	err error
}

func (r *reader) next(n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		r.err = errCopy
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u32() uint32 {
	if v := r.next(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

// checkFile checks b's magic, checksum and format (one of formats) and
// returns a reader of its fields and its format.
func checkFile(b, magic []byte, formats ...byte) (*reader, byte, error) {
	if len(b) < len(magic)+1+sha256.Size || !bytes.Equal(b[:len(magic)], magic) {
		return nil, 0, fmt.Errorf("%w: not a %s file", errCopy, magic)
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if s := sha256.Sum256(body); !bytes.Equal(s[:], sum) {
		return nil, 0, fmt.Errorf("%w: checksum", errCopy)
	}
	if format := body[len(magic)]; !bytes.Contains(formats, []byte{format}) {
		return nil, 0, fmt.Errorf("%w: format %d, this build reads %v", errCopy, format, formats)
	}
	return &reader{b: body[len(magic)+1:]}, body[len(magic)], nil
}

func decodeEntries(b []byte) ([]storedEntry, map[fare.FaceKeyToken]uint64, error) {
	r, _, err := checkFile(b, entriesMagic, copyFormat)
	if err != nil {
		return nil, nil, err
	}
	n := r.u32()
	var entries []storedEntry
	for i := uint32(0); i < n && r.err == nil; i++ {
		var e storedEntry
		copy(e.key[:], r.next(fare.FaceKeyTokenSize))
		e.signed = bytes.Clone(r.next(int(r.u32())))
		entries = append(entries, e)
	}
	m := r.u32()
	tombs := map[fare.FaceKeyToken]uint64{}
	for i := uint32(0); i < m && r.err == nil; i++ {
		var k fare.FaceKeyToken
		copy(k[:], r.next(fare.FaceKeyTokenSize))
		if v := r.next(8); v != nil {
			tombs[k] = binary.BigEndian.Uint64(v)
		}
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, nil, fmt.Errorf("%w: entries truncated or trailing bytes", errCopy)
	}
	return entries, tombs, nil
}

// headFields is the head file's body up to its mac: what the mac covers.
func headFields(signed []byte, trusted, retired []ed25519.PublicKey) []byte {
	b := append([]byte(nil), headMagic...)
	b = append(b, headFormat)
	b = binary.BigEndian.AppendUint32(b, uint32(len(signed)))
	b = append(b, signed...)
	for _, ks := range [][]ed25519.PublicKey{trusted, retired} {
		ks = ks[:min(len(ks), 255)]
		b = append(b, byte(len(ks)))
		for _, k := range ks {
			b = append(b, k...)
		}
	}
	return b
}

// headMAC is the mac of a head file's fields under macKey.
func headMAC(macKey, fields []byte) []byte {
	m := hmac.New(sha256.New, macKey)
	m.Write(fields)
	return m.Sum(nil)
}

// encodeHead writes a head file, its fields under macKey's mac.
func encodeHead(signed []byte, trusted, retired []ed25519.PublicKey, macKey []byte) []byte {
	return sealHead(headFields(signed, trusted, retired), headMAC(macKey, headFields(signed, trusted, retired)))
}

// sealHead appends mac and the checksum to a head file's fields.
func sealHead(fields, mac []byte) []byte {
	b := append(fields, mac...)
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// decodeHead reads a head file; macOK says whether its mac verifies under
// macKey (a format 1 file has none: its trusted keys are not taken).
func decodeHead(b, macKey []byte) (signed []byte, trusted, retired []ed25519.PublicKey, macOK bool, err error) {
	r, format, err := checkFile(b, headMagic, copyFormat, headFormat)
	if err != nil {
		return nil, nil, nil, false, err
	}
	signed = bytes.Clone(r.next(int(r.u32())))
	var keys [2][]ed25519.PublicKey
	for i := range keys {
		n := r.next(1)
		if n == nil {
			break
		}
		for range int(n[0]) {
			if k := r.next(ed25519.PublicKeySize); k != nil {
				keys[i] = append(keys[i], ed25519.PublicKey(bytes.Clone(k)))
			}
		}
	}
	var mac []byte
	if format == headFormat {
		mac = r.next(macSize)
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, nil, nil, false, fmt.Errorf("%w: head truncated or trailing bytes", errCopy)
	}
	if mac != nil {
		fields := b[:len(b)-sha256.Size-macSize]
		macOK = hmac.Equal(mac, headMAC(macKey, fields))
	}
	return signed, keys[0], keys[1], macOK, nil
}

// readNewest reads path.new if it is whole, else path; ok is false when
// neither exists.
func readNewest(path string, check func([]byte) error) (b []byte, ok bool, err error) {
	for _, p := range []string{path + newSuffix, path} {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		if cerr := check(b); cerr != nil {
			if p == path {
				return nil, false, fmt.Errorf("%s: %w", p, cerr)
			}
			continue // a write cut short: the older file is whole
		}
		return b, true, nil
	}
	return nil, false, nil
}

// loadPosition reads where the copy in dir stands (none: not valid).
func loadPosition(dir string) fare.GateFeedPosition {
	var pos fare.GateFeedPosition
	b, ok, err := readNewest(filepath.Join(dir, posFile), func(b []byte) error { return json.Unmarshal(b, &pos) })
	if err != nil || !ok || json.Unmarshal(b, &pos) != nil {
		return fare.GateFeedPosition{}
	}
	return pos
}

// loadCopy reads the copy in dir (empty if there is none); macKey checks
// the head file's mac.
func loadCopy(dir string, macKey []byte) (*storedCopy, error) {
	c := &storedCopy{tombs: map[fare.FaceKeyToken]uint64{}}
	b, ok, err := readNewest(filepath.Join(dir, entriesFile), func(b []byte) error { _, _, err := decodeEntries(b); return err })
	if err != nil {
		return nil, err
	}
	if ok {
		if c.entries, c.tombs, err = decodeEntries(b); err != nil {
			return nil, err
		}
	}
	b, ok, err = readNewest(filepath.Join(dir, headFile), func(b []byte) error { _, _, _, _, err := decodeHead(b, macKey); return err })
	if err != nil {
		return nil, err
	}
	if ok {
		if c.headSigned, c.trusted, c.retired, c.macOK, err = decodeHead(b, macKey); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// writeFile replaces path with b: written to path.new and synced; when
// shred is set, the old file is overwritten with zeros in place and synced
// first; then renamed over it, and the directory synced.
func writeFile(path string, b []byte, shred bool) error {
	tmp := path + newSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if shred {
		if err := zeroFile(path); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// zeroFile overwrites a file's bytes with zeros where they lie and syncs
// it; a missing file is fine.
func zeroFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	zeros := make([]byte, 64<<10)
	for off := int64(0); off < st.Size(); off += int64(len(zeros)) {
		n := min(int64(len(zeros)), st.Size()-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
	}
	return f.Sync()
}
