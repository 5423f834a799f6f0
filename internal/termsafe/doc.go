// Package termsafe escapes, in text edged writes for people (logs, audit
// logs, the admin answers), what a terminal showing it would act on. The
// text carries names from files, which are anyone's who may write to an
// environment's home. It never changes what the text says: an escape
// decodes to the rune it replaces.
package termsafe
