package biometrics

import (
	"encoding/binary"
	"image"
	"image/color"
)

// Phones store a portrait as the sensor took it, sideways, with an Exif
// Orientation tag saying how to turn it for display (an outside test saw
// such a photo give no face at enrolment). decode applies the tag to JPEGs
// through orientedImage, a view that maps coordinates: no second copy of
// the pixels.

// exifOrientation returns the Exif Orientation (1 to 8) of a JPEG's APP1
// segment, or 1 (as stored) when there is none or it does not read. It
// reads no further than the first scan.
func exifOrientation(jpeg []byte) int {
	if len(jpeg) < 4 || jpeg[0] != 0xff || jpeg[1] != 0xd8 {
		return 1
	}
	for i := 2; i+4 <= len(jpeg); {
		if jpeg[i] != 0xff {
			return 1
		}
		marker := jpeg[i+1]
		if marker == 0xff { // fill byte
			i++
			continue
		}
		if marker == 0xda || marker == 0xd9 { // start of scan, end of image
			return 1
		}
		n := int(binary.BigEndian.Uint16(jpeg[i+2:]))
		if n < 2 || i+2+n > len(jpeg) {
			return 1
		}
		if seg := jpeg[i+4 : i+2+n]; marker == 0xe1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			return tiffOrientation(seg[6:])
		}
		i += 2 + n
	}
	return 1
}

// tiffOrientation reads tag 0x0112 from the first IFD of a TIFF header.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var order binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		order = binary.LittleEndian
	case "MM":
		order = binary.BigEndian
	default:
		return 1
	}
	if order.Uint16(t[2:]) != 42 {
		return 1
	}
	ifd := int64(order.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > int64(len(t)) {
		return 1
	}
	count := int64(order.Uint16(t[ifd:]))
	for e := ifd + 2; e+12 <= int64(len(t)) && e < ifd+2+12*count; e += 12 {
		// Tag 0x0112, type SHORT (3), one value, held in the entry.
		if order.Uint16(t[e:]) == 0x0112 && order.Uint16(t[e+2:]) == 3 && order.Uint32(t[e+4:]) == 1 {
			if o := int(order.Uint16(t[e+8:])); o >= 1 && o <= 8 {
				return o
			}
			return 1
		}
	}
	return 1
}

// orient returns img as displayed under Exif orientation o.
func orient(img image.Image, o int) image.Image {
	if o <= 1 || o > 8 {
		return img
	}
	return &orientedImage{src: img, o: o, b: img.Bounds()}
}

// orientedImage is src turned by an Exif orientation: its bounds start at
// (0, 0), with width and height swapped for orientations 5 to 8.
type orientedImage struct {
	src image.Image
	o   int
	b   image.Rectangle // src's bounds
}

func (m *orientedImage) ColorModel() color.Model { return m.src.ColorModel() }

func (m *orientedImage) Bounds() image.Rectangle {
	w, h := m.b.Dx(), m.b.Dy()
	if m.o >= 5 {
		w, h = h, w
	}
	return image.Rect(0, 0, w, h)
}

// At maps a displayed pixel to the stored one (W x H as stored).
func (m *orientedImage) At(x, y int) color.Color {
	w, h := m.b.Dx(), m.b.Dy()
	var sx, sy int
	switch m.o {
	case 2: // mirrored left to right
		sx, sy = w-1-x, y
	case 3: // turned half round
		sx, sy = w-1-x, h-1-y
	case 4: // mirrored top to bottom
		sx, sy = x, h-1-y
	case 5: // transposed
		sx, sy = y, x
	case 6: // stored turned a quarter anticlockwise: shown a quarter clockwise
		sx, sy = y, h-1-x
	case 7: // transversed
		sx, sy = w-1-y, h-1-x
	case 8: // stored turned a quarter clockwise
		sx, sy = w-1-y, x
	default:
		sx, sy = x, y
	}
	return m.src.At(m.b.Min.X+sx, m.b.Min.Y+sy)
}
