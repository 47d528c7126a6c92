// Where the page's lines break: after a word that ends a sentence (. ! ? or an ellipsis,
// perhaps followed by closing quotes or brackets), so each sentence gets its own line.
const SENTENCE_END = /[.!?…][)\]"'»«“”‘’]*$/u;

export function endsSentence(word) {
  return SENTENCE_END.test(word);
}

/** Which words start a line; `next(word)` answers for each word in order. */
export class SentenceLines {
  constructor() {
    this.atStart = true;
  }

  next(word) {
    const starts = this.atStart;
    this.atStart = endsSentence(word);
    return starts;
  }
}
