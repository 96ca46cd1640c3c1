// asciiOnly, for scripts/build/bundle.mjs (and test/start.test.ts, which checks it on a table of sources).
//
// `text` (JavaScript source) with every character outside ASCII written as a \u escape: UTF-16 units, so a pair
// for one beyond U+FFFF. V8 keeps a source with none as a one-byte string: half the memory, and less to decode at
// each start (img-build's 437 KB body, with three such characters in a regular expression and comments, took
// 7.5 ms to decode, 5.0 ms once ASCII: profiles of six cached builds each). esbuild's ASCII output leaves regular
// expression literals and the comments it keeps as written.
// The escape stands for the same character in a string, a template's cooked text, a regular expression and a
// comment. A character written escaped (`\µ`, an identity escape) loses that backslash, which would otherwise
// escape the new one. Only a template's raw text would differ, so a text using String.raw is left as it is.
export function asciiOnly(text) {
  if (text.includes('String.raw')) return text;
  return text.replace(/(\\*)([\u0080-\uffff])/g, (_, slashes, c) => {
    const kept = slashes.length % 2 === 1 ? slashes.slice(1) : slashes;
    return `${kept}\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}
