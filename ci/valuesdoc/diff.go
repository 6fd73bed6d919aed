package main

import (
	"fmt"
	"strings"
)

// diffContext is how many unchanged lines surround each change.
const diffContext = 3

// maxDiffCells bounds the line-by-line comparison; larger inputs only report their sizes.
const maxDiffCells = 16 << 20

// unifiedDiff returns a unified diff of two texts, from the longest common subsequence of their lines.
func unifiedDiff(nameA, nameB, a, b string) string {
	la, lb := splitLines(a), splitLines(b)
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", nameA, nameB)
	if len(la)*len(lb) > maxDiffCells {
		fmt.Fprintf(&out, "@@ files differ: %d lines on disk, %d generated @@\n", len(la), len(lb))
		return out.String()
	}

	// lcs[i][j] is the length of the longest common subsequence of la[i:] and lb[j:].
	lcs := make([][]int, len(la)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(lb)+1)
	}
	for i := len(la) - 1; i >= 0; i-- {
		for j := len(lb) - 1; j >= 0; j-- {
			if la[i] == lb[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}

	type edit struct {
		op   byte // ' ', '-' or '+'
		text string
		a, b int // line numbers (0-based) in a and b before this edit
	}
	var edits []edit
	i, j := 0, 0
	for i < len(la) || j < len(lb) {
		switch {
		case i < len(la) && j < len(lb) && la[i] == lb[j]:
			edits = append(edits, edit{' ', la[i], i, j})
			i, j = i+1, j+1
		case i < len(la) && (j == len(lb) || lcs[i+1][j] >= lcs[i][j+1]):
			edits = append(edits, edit{'-', la[i], i, j})
			i++
		default:
			edits = append(edits, edit{'+', lb[j], i, j})
			j++
		}
	}

	// A hunk runs from diffContext lines before a change to diffContext lines after the last change that follows
	// it with at most 2*diffContext unchanged lines in between.
	for k := 0; k < len(edits); {
		if edits[k].op == ' ' {
			k++
			continue
		}
		start, last := max(0, k-diffContext), k
		for n := k + 1; n < len(edits); n++ {
			if edits[n].op == ' ' {
				continue
			}
			if n-last-1 > 2*diffContext {
				break
			}
			last = n
		}
		end := min(len(edits), last+1+diffContext)

		countA, countB := 0, 0
		for _, e := range edits[start:end] {
			if e.op != '+' {
				countA++
			}
			if e.op != '-' {
				countB++
			}
		}
		fmt.Fprintf(&out, "@@ -%d,%d +%d,%d @@\n", edits[start].a+1, countA, edits[start].b+1, countB)
		for _, e := range edits[start:end] {
			fmt.Fprintf(&out, "%c%s\n", e.op, e.text)
		}
		k = end
	}
	return out.String()
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
