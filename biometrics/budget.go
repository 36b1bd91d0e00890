package biometrics

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"strings"
)

// CheckDecodeBudget reads a JPEG's or PNG's header and refuses, before any
// pixel is decoded, an image of more than maxPixels pixels or whose
// decoding would allocate more than 4 bytes a pixel of that budget: a
// 16-bit PNG decodes to 8 bytes a pixel; a JPEG is costed as image/jpeg
// allocates it (see jpegCost): its planes rounded up to whole MCUs, a
// progressive JPEG's coefficients (4 bytes a sample besides the sample), a
// CMYK or YCCK JPEG's 4-byte CMYK copy and an RGB one's RGBA copy (a few
// hundred KB of one colour used to decode to over a gigabyte).
func CheckDecodeBudget(data []byte, maxPixels int) error {
	if len(data) == 0 {
		return ErrEmptyImage
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		if errors.Is(err, image.ErrFormat) {
			return ErrUnsupportedFormat
		}
		return &ImageLoadError{Err: err}
	}
	if format != "jpeg" && format != "png" {
		return ErrUnsupportedFormat
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return &ImageLoadError{Err: fmt.Errorf("%dx%d image", cfg.Width, cfg.Height)}
	}
	pixels := int64(cfg.Width) * int64(cfg.Height)
	if pixels > int64(maxPixels) {
		return fmt.Errorf("%w: %dx%d exceeds %d pixels", ErrImageTooLarge, cfg.Width, cfg.Height, maxPixels)
	}
	cost, why := pixels*decodedBytesPerPixel(cfg.ColorModel), ""
	if format == "jpeg" {
		cost, why = jpegCost(data, cfg.Width, cfg.Height)
	} else {
		if (cfg.ColorModel == color.GrayModel || cfg.ColorModel == color.Gray16Model) && pngHasTRNS(data) {
			// A grey PNG with a transparent shade decodes to NRGBA (or
			// NRGBA64): DecodeConfig stops at the header and reports grey
			// (an outside review's 23 KB frame, costed at 48 MB, took
			// 192 MB).
			per := int64(4)
			if cfg.ColorModel == color.Gray16Model {
				per = 8
			}
			cost, why = pixels*per, " (grey with transparency)"
		}
		if decodedBytesPerPixel(cfg.ColorModel) > 4 || cost > pixels*4 {
			why += " (16 bits a channel)"
		}
		if pngInterlaced(data) {
			// image/png decodes an Adam7 image pass by pass into images
			// of its own, then copies them into the whole: twice the
			// pixels (an outside review measured 16 bytes a pixel for
			// 16-bit RGBA).
			cost *= 2
			why += " (interlaced)"
		}
	}
	if cost > 4*int64(maxPixels) {
		return fmt.Errorf("%w: %dx%d at %.1f bytes a pixel%s exceeds %d pixels' budget of %d bytes", ErrImageTooLarge, cfg.Width, cfg.Height, float64(cost)/float64(pixels), why, maxPixels, 4*int64(maxPixels))
	}
	return nil
}

// jpegCost is how many bytes image/jpeg (Go 1.26) allocates decoding a
// width x height JPEG, besides its decoder's fixed state (about 20 KB), and
// why it is more than its pixels when it is. From scan.go and reader.go:
//
//   - the planes: every component c of the frame is decoded into
//     64*mxx*myy*H_c*V_c bytes, the image rounded up to whole MCUs of
//     8*H_0 x 8*V_0 pixels (mxx x myy of them; a grey image's MCU is 8x8
//     whatever its H and V): one byte a sample (an image.Gray, an
//     image.YCbCr with its chroma as subsampled, and a 4th plane for K);
//   - a progressive frame (SOF2) keeps every component's coefficients
//     besides, a [64]int32 block per 64 samples: 4 bytes a sample;
//   - a 4-component frame (CMYK or YCCK, Adobe) is then copied into an
//     image.CMYK (or an image.RGBA taken as one): 4 bytes a pixel more;
//   - a 3-component frame that is RGB (components named R, G, B, or an Adobe
//     APP14 segment with transform 0, which may come anywhere up to the last
//     scan) is copied into an image.RGBA: 4 bytes a pixel more.
//
// Measured with runtime.MemStats.TotalAlloc around jpeg.Decode (Go 1.26;
// the estimate is what is asked of the allocator, which rounds large
// objects up to 8 KB pages; TestJPEGCostMatchesDecoder and FuzzDecodeBudget
// hold the estimate to the measure): at 400x300, grey 1.02 bytes a pixel
// (estimated 1.01), YCbCr 4:2:0 1.57 (1.52), 4:4:4 3.07 (3.04), 4:2:0
// progressive 7.72 (7.60), 4:4:4 progressive 15.36 (15.20), Adobe RGB 7.10
// (7.04), CMYK or YCCK 8.13 (8.05), CMYK progressive 24.51 (24.27). The
// outside tester's files, 6320x6320: a progressive 4:4:4 JPEG with a junk
// byte after SOI allocated 599,184,808 bytes (estimated 599,136,000; it was
// costed at 3 bytes a pixel, 120 MB, and admitted under the 40 MP budget of
// 160 MB), a baseline CMYK one 319,567,536 (319,539,200; costed at 4 bytes
// a pixel and admitted), a progressive CMYK one with junk 958,674,736
// (958,617,600); their fuzz find, 512x512 progressive 4:4:4 with junk after
// DQT, 3,946,096 (3,932,160).
//
// The frame header is found as the decoder finds it (jpegFrame): a JPEG
// whose bytes before its SOF are not where a strict parser expects markers
// (junk between segments, "\xff\x00", fill bytes, stray RSTn) used to hide
// its SOF and be costed at its colour model alone. Should the two ever
// disagree, it is costed as the worst frame Go decodes: 24 bytes a pixel,
// MCUs of 32x16.
func jpegCost(b []byte, width, height int) (cost int64, why string) {
	f, ok := jpegFrame(b)
	if !ok || f.width != width || f.height != height {
		mcus := int64((width+31)/32) * int64((height+15)/16)
		return 24 * 512 * mcus, " (a JPEG whose frame header did not parse: costed as the worst Go decodes)"
	}
	h0, v0 := f.h[0], f.v[0]
	mxx := int64((f.width + 8*h0 - 1) / (8 * h0))
	myy := int64((f.height + 8*v0 - 1) / (8 * v0))
	var samples int64
	for c := range f.nComp {
		samples += 64 * mxx * myy * int64(f.h[c]*f.v[c])
	}
	cost = samples
	pixels := int64(f.width) * int64(f.height)
	var whys []string
	if f.progressive {
		cost += 4 * samples
		whys = append(whys, "a progressive JPEG: its coefficients too")
	}
	switch {
	case f.nComp == 4:
		cost += 4 * pixels
		whys = append(whys, "a CMYK or YCCK JPEG: a CMYK copy too")
	case f.nComp == 3 && (f.rgbNames || adobeRGB(b)):
		cost += 4 * pixels
		whys = append(whys, "an RGB JPEG: an RGBA copy too")
	}
	if len(whys) > 0 {
		why = " (" + strings.Join(whys, "; ") + ")"
	}
	return cost, why
}

// frame is a JPEG frame header as image/jpeg reads it.
type frame struct {
	progressive   bool
	nComp         int
	width, height int
	h, v          [4]int // sampling factors (1, 1 for a grey image)
	rgbNames      bool   // components named 'R', 'G', 'B'
}

// jpegFrame finds and reads a JPEG's frame header (SOF0, SOF1 or SOF2) the
// way image/jpeg's decoder walks to it: bytes other than 0xff where a
// marker should start are skipped, "\xff\x00" is skipped, 0xff fill bytes
// before a marker are skipped, RST0-7 carry no length, APPn, COM, DHT, DQT
// and DRI segments are skipped by their declared length; any other marker,
// an SOS or EOI first, or a header Go would refuse gives ok false.
func jpegFrame(b []byte) (f frame, ok bool) {
	if len(b) < 2 || b[0] != 0xff || b[1] != 0xd8 {
		return f, false
	}
	i := 2
	for {
		if i+2 > len(b) {
			return f, false
		}
		t0, t1 := b[i], b[i+1]
		i += 2
		for t0 != 0xff { // extraneous data, which the decoder ignores
			if i >= len(b) {
				return f, false
			}
			t0, t1 = t1, b[i]
			i++
		}
		marker := t1
		if marker == 0 { // "\xff\x00": extraneous data too
			continue
		}
		for marker == 0xff { // fill bytes
			if i >= len(b) {
				return f, false
			}
			marker = b[i]
			i++
		}
		if marker >= 0xd0 && marker <= 0xd7 { // RSTn: no length
			continue
		}
		if marker == 0xd9 || i+2 > len(b) { // EOI before a frame
			return f, false
		}
		n := int(b[i])<<8 | int(b[i+1]) - 2
		i += 2
		if n < 0 || i+n > len(b) {
			return f, false
		}
		switch {
		case marker == 0xc0 || marker == 0xc1 || marker == 0xc2:
			return readSOF(b[i:i+n], marker == 0xc2)
		case marker >= 0xe0 && marker <= 0xef, marker == 0xfe, marker == 0xc4, marker == 0xdb, marker == 0xdd:
			i += n
		default: // SOS before a frame, or a marker the decoder refuses
			return f, false
		}
	}
}

// readSOF reads a frame header's segment as image/jpeg's processSOF does.
func readSOF(seg []byte, progressive bool) (f frame, ok bool) {
	switch len(seg) {
	case 6 + 3*1, 6 + 3*3, 6 + 3*4:
	default:
		return f, false
	}
	f.nComp = (len(seg) - 6) / 3
	if seg[0] != 8 || int(seg[5]) != f.nComp {
		return f, false
	}
	f.progressive = progressive
	f.height = int(seg[1])<<8 | int(seg[2])
	f.width = int(seg[3])<<8 | int(seg[4])
	for c := range f.nComp {
		h, v := int(seg[7+3*c]>>4), int(seg[7+3*c]&15)
		if h < 1 || h > 4 || v < 1 || v > 4 || h == 3 || v == 3 {
			return f, false
		}
		if f.nComp == 1 {
			h, v = 1, 1
		}
		f.h[c], f.v[c] = h, v
	}
	f.rgbNames = f.nComp == 3 && seg[6] == 'R' && seg[9] == 'G' && seg[12] == 'B'
	return f, true
}

// adobeRGB reports whether an Adobe APP14 segment with transform 0
// ("unknown": RGB for three components) appears anywhere in b. The decoder
// reads APP14 segments between scans too, so every "\xff\xee" is looked at,
// not only those before the first scan: a false find costs the image more,
// never less.
func adobeRGB(b []byte) bool {
	for i := 0; ; i++ {
		j := bytes.Index(b[i:], []byte{0xff, 0xee})
		if j < 0 {
			return false
		}
		i += j
		if i+4+12 <= len(b) && int(b[i+2])<<8|int(b[i+3]) >= 2+12 &&
			string(b[i+4:i+9]) == "Adobe" && b[i+4+11] == 0 {
			return true
		}
	}
}

// decodedBytesPerPixel is what the Go decoder allocates a pixel of a
// colour model.
func decodedBytesPerPixel(m color.Model) int64 {
	switch m {
	case color.RGBA64Model, color.NRGBA64Model:
		return 8
	case color.Gray16Model:
		return 2
	case color.GrayModel:
		return 1
	case color.YCbCrModel:
		return 3 // 4:4:4 at most
	}
	if _, ok := m.(color.Palette); ok {
		return 1
	}
	return 4
}

// pngHasTRNS says whether a PNG holds a tRNS chunk before its image data:
// with it, image/png decodes grey into NRGBA or NRGBA64, whatever
// DecodeConfig (which reads only the header) says.
func pngHasTRNS(data []byte) bool {
	for i := 8; i+8 <= len(data); {
		n := int64(data[i])<<24 | int64(data[i+1])<<16 | int64(data[i+2])<<8 | int64(data[i+3])
		switch string(data[i+4 : i+8]) {
		case "tRNS":
			return true
		case "IDAT", "IEND":
			return false
		}
		next := int64(i) + 12 + n // length, type, data, CRC
		if next > int64(len(data)) {
			return false
		}
		i = int(next)
	}
	return false
}

// pngInterlaced says whether a PNG's header chunk (IHDR, first after the
// signature) names Adam7 interlacing: its 13th byte of data.
func pngInterlaced(data []byte) bool {
	const at = 8 + 4 + 4 + 12 // signature, chunk length, "IHDR", the fields before it
	return len(data) > at && string(data[12:16]) == "IHDR" && data[at] == 1
}
