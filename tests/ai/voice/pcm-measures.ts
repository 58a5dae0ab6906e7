/** Frequency from the count of rising zero crossings: exact enough for a clean sine. */
export function frequencyOf(pcm: Int16Array, rate: number): number {
  let rising = 0;
  for (let i = 1; i < pcm.length; i++) if (pcm[i - 1]! < 0 && pcm[i]! >= 0) rising++;
  return (rising * rate) / pcm.length;
}
