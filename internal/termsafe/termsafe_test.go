package termsafe

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestJSONEscapesWhatEncodingJSONLeaves(t *testing.T) {
	in := "x\x1b\u009b\u202e\x7f\u2067y é"
	b, err := json.Marshal(map[string]string{"k\u202e": in})
	require.NoError(t, err)
	out := JSON(b)
	assert.Equal(t, `{"k\u202e":"x\u001b\u009b\u202e\u007f\u2067y é"}`, string(out))
	var back map[string]string
	require.NoError(t, json.Unmarshal(out, &back))
	assert.Equal(t, in, back["k\u202e"], "the same string, decoded")

	clean := []byte(`{"a":"b é"}`)
	assert.Same(t, &clean[0], &JSON(clean)[0], "clean text is returned as it is")
}

func TestVisibleShowsControlsAsGoEscapes(t *testing.T) {
	in := "a\x1b]0;x\x07\u009b\u202e\xff\r\nb\tc\rd café 東京 xn--caf-dma"
	assert.Equal(t, `a\x1b]0;x\x07\u009b\u202e\xff`+"\r\nb\tc"+`\x0d`+"d café 東京 xn--caf-dma", string(Visible([]byte(in))))

	clean := []byte("a\tb\r\nc é")
	assert.Same(t, &clean[0], &Visible(clean)[0], "clean text is returned as it is")
}

// Plain holds exactly for the text that Visible leaves as it is and that
// has no tab, newline or carriage return: what a table may copy as it is.
func TestPlainIsWhatVisibleLeavesOnOneLine(t *testing.T) {
	for b := 0; b < 256; b++ {
		s := "a" + string([]byte{byte(b)}) + "z"
		unchanged := string(Visible([]byte(s))) == s && b != '\t' && b != '\n' && b != '\r'
		if b < 0x80 {
			assert.Equal(t, unchanged, Plain(s), "byte %#x", b)
		} else {
			assert.False(t, Plain(s), "byte %#x: not ASCII", b)
		}
	}
	assert.True(t, Plain(""))
	assert.False(t, Plain("café"), "printable, but not ASCII: its width is not its length")
}
