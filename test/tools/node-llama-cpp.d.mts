export declare const NODE_LLAMA_CPP_VERSION: string;
export declare const toolDir: string;
export declare function binaryPackage(platform?: string, arch?: string): string | undefined;
export declare function ensureNodeLlamaCpp(opts?: { quiet?: boolean }):
  | { entry: string; installed: boolean; seconds?: number; reason?: undefined }
  | { reason: string; entry?: undefined };
export declare function importNodeLlamaCpp(): Promise<any>;
