package eval

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
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
	Idols []struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		BandName string `json:"band_name"`
	} `json:"idols"`
	Faces []struct {
		Descriptor string `json:"descriptor"`
		IdolID     string `json:"idol_id"`
	} `json:"faces"`
}

// maxIdolsBytes bounds what DecodeIdols reads: the real file is about 1 MB.
const maxIdolsBytes = 64 << 20

// DecodeIdols reads go-face-testdata's idols.json: descriptors as base64 of
// 128 little-endian float32 values, labelled "<name>, <band_name>".
func DecodeIdols(r io.Reader) (*Dataset, error) {
	var f idolsFile
	dec := json.NewDecoder(io.LimitReader(r, maxIdolsBytes))
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("eval: decode idols: %w", err)
	}
	names := make(map[string]string, len(f.Idols))
	for _, idol := range f.Idols {
		names[idol.ID] = idol.Name + ", " + idol.BandName
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
