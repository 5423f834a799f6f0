// Package unidiff writes unified diffs (diff -u, 3 lines of context) of
// two texts, line by line, for edged's config files: what a generation
// changed, what a reload or a promotion would change. It compares text
// only; it never reads files, so it cannot print what it is not given.
package unidiff
