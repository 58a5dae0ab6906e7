// eSpeak NG compiled to WASM (a devDependency, for speech fixtures): the part the tests use.
declare module "espeak-ng" {
  interface ESpeakNgInstance {
    readonly FS: { readFile(path: string): Uint8Array };
  }
  export default function ESpeakNg(options: { arguments: string[] }): Promise<ESpeakNgInstance>;
}
