package eval

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
)

// Dim is the descriptor length.
const Dim = 128

// Sample is one labelled descriptor.
type Sample struct {
	Label      string
	Descriptor [Dim]float32
}

// Dataset is a set of labelled descriptors. Labels lists each label once, in
// order of first appearance.
type Dataset struct {
	Samples []Sample
	Labels  []string
}

type idolsFile struct {
	Idols []idolJSON `json:"idols"`
	Faces []faceJSON `json:"faces"`
}

type idolJSON struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	BandName string `json:"band_name"`
}

type faceJSON struct {
	Descriptor string `json:"descriptor"`
	IdolID     string `json:"idol_id"`
}

// maxIdolsBytes bounds what DecodeIdols reads: the real file is about 1 MB.
const maxIdolsBytes = 64 << 20

// DecodeIdols reads go-face-testdata's idols.json: descriptors as base64 of
// 128 little-endian float32 values, labelled "<name>, <band_name>", or
// "<name>" when band_name is empty (as EncodeIdols writes other data sets).
func DecodeIdols(r io.Reader) (*Dataset, error) {
	var f idolsFile
	dec := json.NewDecoder(io.LimitReader(r, maxIdolsBytes))
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("eval: decode idols: %w", err)
	}
	names := make(map[string]string, len(f.Idols))
	for _, idol := range f.Idols {
		names[idol.ID] = idol.Name
		if idol.BandName != "" {
			names[idol.ID] += ", " + idol.BandName
		}
	}
	ds := &Dataset{Samples: make([]Sample, 0, len(f.Faces))}
	seen := make(map[string]bool)
	for i, face := range f.Faces {
		label, ok := names[face.IdolID]
		if !ok {
			return nil, fmt.Errorf("eval: decode idols: face %d: unknown idol_id %q", i, face.IdolID)
		}
		d, err := DecodeDescriptor(face.Descriptor)
		if err != nil {
			return nil, fmt.Errorf("eval: decode idols: face %d: %w", i, err)
		}
		if !seen[label] {
			seen[label] = true
			ds.Labels = append(ds.Labels, label)
		}
		ds.Samples = append(ds.Samples, Sample{Label: label, Descriptor: d})
	}
	if len(ds.Samples) == 0 {
		return nil, fmt.Errorf("eval: decode idols: no faces")
	}
	return ds, nil
}

// EncodeIdols writes ds in the idols.json format DecodeIdols reads: one
// idol per label (id = its position, name = the label, no band), then the
// faces in ds's order. It lets any labelled descriptors (an operator's
// enrolment captures, another test set) be kept and re-measured with the
// same tools as idols.json.
func EncodeIdols(w io.Writer, ds *Dataset) error {
	var f idolsFile
	ids := make(map[string]string, len(ds.Labels))
	for i, l := range ds.Labels {
		id := strconv.Itoa(i + 1)
		ids[l] = id
		f.Idols = append(f.Idols, idolJSON{ID: id, Name: l})
	}
	for i, s := range ds.Samples {
		id, ok := ids[s.Label]
		if !ok {
			return fmt.Errorf("eval: encode idols: sample %d: label %q not in Labels", i, s.Label)
		}
		f.Faces = append(f.Faces, faceJSON{Descriptor: EncodeDescriptor(s.Descriptor), IdolID: id})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(&f)
}

// DecodeDescriptor decodes base64 of 128 little-endian float32 values,
// rejecting NaN and infinities.
func DecodeDescriptor(s string) ([Dim]float32, error) {
	var d [Dim]float32
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return d, fmt.Errorf("descriptor: %w", err)
	}
	if len(raw) != 4*Dim {
		return d, fmt.Errorf("descriptor: %d bytes, want %d", len(raw), 4*Dim)
	}
	for i := range d {
		v := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return d, fmt.Errorf("descriptor: value %d is not finite", i)
		}
		d[i] = v
	}
	return d, nil
}

// EncodeDescriptor is the inverse of DecodeDescriptor.
func EncodeDescriptor(d [Dim]float32) string {
	var raw [4 * Dim]byte
	for i, v := range d {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return base64.StdEncoding.EncodeToString(raw[:])
}
