package main

import (
	"fmt"
	"math"
	"strings"
)

// plot draws MB/s against payload size (both on log scales), a line per
// implementation, as SVG.
func plot(results map[string][]float64) []byte {
	const w, h, left, right, top, bottom = 640.0, 360.0, 70.0, 170.0, 20.0, 50.0
	colors := []string{"#d62728", "#1f77b4", "#2ca02c", "#7f7f7f"}
	maxV := 1.0
	for _, vs := range results {
		for _, v := range vs {
			maxV = math.Max(maxV, v)
		}
	}
	top10 := math.Pow(10, math.Ceil(math.Log10(maxV)))
	x := func(i int) float64 { return left + float64(i)*(w-left-right)/float64(len(sizes)-1) }
	y := func(v float64) float64 {
		v = math.Max(v, 1)
		return top + (h-top-bottom)*(1-math.Log10(v)/math.Log10(top10))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for v := 1.0; v <= top10; v *= 10 {
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" text-anchor="end">%g</text>`+"\n",
			left, w-right, y(v), y(v), left-6, y(v)+4, v)
	}
	for i, s := range sizes {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x(i), h-bottom+18, sizeName(s))
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">payload (echoed, %d callers)</text>`+"\n", (left+w-right)/2, h-10, callers)
	fmt.Fprintf(&b, `<text transform="translate(16,%.0f) rotate(-90)" text-anchor="middle">MB/s each way (log)</text>`+"\n", (top+h-bottom)/2)
	for k, name := range impls {
		vs := results[name]
		var pts []string
		for i, v := range vs {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(v)))
		}
		c := colors[k%len(colors)]
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", c, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="3" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n",
			w-right+12, top+float64(k)*20+8, c, w-right+30, top+float64(k)*20+12, name)
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}
