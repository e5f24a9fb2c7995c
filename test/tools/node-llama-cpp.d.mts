export declare const NODE_LLAMA_CPP_VERSION: string;
export declare const toolDir: string;
export declare function binaryPackage(platform?: string, arch?: string): string | undefined;
export declare function ensureNodeLlamaCpp(opts?: {
  quiet?: boolean;
}): { entry: string; installed: boolean; seconds?: number; reason?: undefined } | { reason: string; entry?: undefined };
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the module is installed on demand, untyped here
export declare function importNodeLlamaCpp(): Promise<any>;
