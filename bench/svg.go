package main

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
)

// chart is one grouped bar chart: for every group (an x position) one bar
// per series (an implementation).
type chart struct {
	title  string
	ylabel string
	groups []string
	series []string
	values [][]float64 // [group][series]; NaN: no bar
	log    bool        // logarithmic y axis
	ymax   float64     // fixed top of a linear axis; 0: from the data
	refs   []refLine   // horizontal reference lines
}

type refLine struct {
	value float64
	label string
}

// seriesColors are fixed per implementation so every plot reads the same.
var seriesColors = map[string]string{
	"goflame":   "#e4572e",
	"actor":     "#4c78a8",
	"semaphore": "#54a24b",
	"puddle":    "#b279a2",
	"mutex":     "#9d9d9d",
}

var otherColors = []string{"#f58518", "#72b7b2", "#eeca3b", "#ff9da6", "#9d755d"}

func colorOf(series string, i int) string {
	if c, ok := seriesColors[series]; ok {
		return c
	}
	return otherColors[i%len(otherColors)]
}

const (
	svgWidth    = 960
	panelHeight = 300
	marginLeft  = 80
	marginRight = 20
	panelTop    = 34 // panel title
	panelBottom = 46 // group labels
	legendH     = 28
	headerH     = 34
)

// writeSVG draws panels stacked under one title and a shared legend (the
// series of the first panel).
func writeSVG(out io.Writer, title string, panels []chart) error {
	w := bufio.NewWriter(out)
	height := headerH + legendH + len(panels)*(panelTop+panelHeight+panelBottom)
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif">`+"\n",
		svgWidth, height, svgWidth, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="%d" y="22" font-size="16" font-weight="bold">%s</text>`+"\n", marginLeft, esc(title))
	if len(panels) > 0 {
		x := marginLeft
		for i, s := range panels[0].series {
			fmt.Fprintf(w, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/>`, x, headerH+2, colorOf(s, i))
			fmt.Fprintf(w, `<text x="%d" y="%d" font-size="12">%s</text>`+"\n", x+16, headerH+12, esc(s))
			x += 24 + 8*len(s) + 16
		}
	}
	y := headerH + legendH
	for _, p := range panels {
		p.draw(w, y)
		y += panelTop + panelHeight + panelBottom
	}
	fmt.Fprintln(w, "</svg>")
	return w.Flush()
}

// draw draws the panel with its top at y0.
func (c chart) draw(w io.Writer, y0 int) {
	plotW := float64(svgWidth - marginLeft - marginRight)
	top := float64(y0 + panelTop)
	bottom := top + panelHeight
	fmt.Fprintf(w, `<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>`+"\n", marginLeft, y0+20, esc(c.title))

	lo, hi := c.yRange()
	ypos := func(v float64) float64 {
		if c.log {
			return bottom - (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*panelHeight
		}
		return bottom - (v-lo)/(hi-lo)*panelHeight
	}

	// Axis, grid and ticks.
	for _, t := range c.ticks(lo, hi) {
		y := ypos(t)
		fmt.Fprintf(w, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e5e5e5"/>`, marginLeft, y, svgWidth-marginRight, y)
		fmt.Fprintf(w, `<text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="#444">%s</text>`+"\n", marginLeft-6, y+4, fmtNum(t))
	}
	fmt.Fprintf(w, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#333"/>`, marginLeft, top, marginLeft, bottom)
	fmt.Fprintf(w, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#333"/>`+"\n", marginLeft, bottom, svgWidth-marginRight, bottom)
	fmt.Fprintf(w, `<text transform="translate(16 %.1f) rotate(-90)" font-size="12" text-anchor="middle" fill="#444">%s</text>`+"\n",
		(top+bottom)/2, esc(c.ylabel))

	// Bars.
	ng, ns := len(c.groups), len(c.series)
	if ng == 0 || ns == 0 {
		return
	}
	gw := plotW / float64(ng)
	bw := math.Min(gw*0.8/float64(ns), 90)
	pad := (gw - bw*float64(ns)) / 2
	label := 10.0
	if bw < 26 {
		label = 8
	}
	for g, name := range c.groups {
		gx := float64(marginLeft) + float64(g)*gw
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle">%s</text>`+"\n", gx+gw/2, bottom+18, esc(name))
		for s := range c.series {
			v := math.NaN()
			if s < len(c.values[g]) {
				v = c.values[g][s]
			}
			if math.IsNaN(v) {
				continue
			}
			x := gx + pad + float64(s)*bw
			vv := math.Max(v, lo)
			y := ypos(math.Min(vv, hi))
			fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s</title></rect>`,
				x+1, y, bw-2, bottom-y, colorOf(c.series[s], s), esc(c.series[s]), fmtNum(v))
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f" font-size="%.0f" text-anchor="middle" fill="#222">%s</text>`+"\n",
				x+bw/2, y-3, label, fmtNum(v))
		}
	}
	for _, r := range c.refs {
		if r.value < lo || r.value > hi {
			continue
		}
		y := ypos(r.value)
		fmt.Fprintf(w, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#c00" stroke-dasharray="6 4"/>`, marginLeft, y, svgWidth-marginRight, y)
		fmt.Fprintf(w, `<text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="#c00">%s</text>`+"\n", svgWidth-marginRight-4, y-4, esc(r.label))
	}
}

// yRange is the axis range: from 0 (linear) or the decade below the
// smallest value (log) to a round number above the largest value or
// reference line.
func (c chart) yRange() (lo, hi float64) {
	mx, mn := 0.0, math.Inf(1)
	for _, g := range c.values {
		for _, v := range g {
			if math.IsNaN(v) {
				continue
			}
			mx = math.Max(mx, v)
			if v > 0 {
				mn = math.Min(mn, v)
			}
		}
	}
	for _, r := range c.refs {
		mx = math.Max(mx, r.value)
	}
	if c.log {
		if math.IsInf(mn, 1) {
			mn = 1
		}
		lo = math.Pow(10, math.Floor(math.Log10(mn)))
		hi = math.Pow(10, math.Ceil(math.Log10(mx*1.3)))
		if hi <= lo {
			hi = lo * 10
		}
		return lo, hi
	}
	if c.ymax > 0 {
		return 0, c.ymax
	}
	if mx <= 0 {
		return 0, 1
	}
	step := niceStep(mx * 1.12 / 5)
	return 0, math.Ceil(mx*1.12/step) * step
}

func (c chart) ticks(lo, hi float64) []float64 {
	var ts []float64
	if c.log {
		for d := lo; d <= hi*1.0001; d *= 10 {
			ts = append(ts, d)
		}
		return ts
	}
	step := niceStep(hi / 5)
	for t := lo; t <= hi*1.0001; t += step {
		ts = append(ts, t)
	}
	return ts
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	switch f := x / p; {
	case f <= 1:
		return p
	case f <= 2:
		return 2 * p
	case f <= 5:
		return 5 * p
	}
	return 10 * p
}

// fmtNum formats v in at most about four characters: 0.87, 12.3, 456, 1.2k,
// 34M.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1e9:
		return trim(v/1e9) + "G"
	case a >= 1e6:
		return trim(v/1e6) + "M"
	case a >= 1e4:
		return trim(v/1e3) + "k"
	}
	return trim(v)
}

// trim prints v with three significant digits, without trailing zeros.
func trim(v float64) string {
	a := math.Abs(v)
	prec := 0
	switch {
	case a < 1:
		prec = 3
	case a < 10:
		prec = 2
	case a < 100:
		prec = 1
	}
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if prec > 0 {
		for s[len(s)-1] == '0' {
			s = s[:len(s)-1]
		}
		if s[len(s)-1] == '.' {
			s = s[:len(s)-1]
		}
	}
	return s
}

func esc(s string) string { return html.EscapeString(s) }
