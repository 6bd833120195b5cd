// Types of require('frazil-sdk'), for editors and TypeScript. The package is plain JavaScript
// (index.js); these declarations describe it and nothing else.

/** A JSON value as stored in a record. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A stored record: the caller's fields plus the platform's. */
export interface StoredRecord {
  id: string;
  created_by: string | null;
  created_at: string;
  updated_at: string;
  [field: string]: Json;
}

export type Operator = 'eq' | 'ne' | 'lt' | 'lte' | 'gt' | 'gte' | 'in' | 'contains';

/** {field: value} (equality) or {field: {op: value}}; several fields are ANDed; "a.b" reaches nested fields. */
export type Where = { [field: string]: Json | Partial<Record<Operator, Json>> };

export type AclMode = 'public' | 'authenticated' | 'owner' | 'admin';
export interface Acl { read?: AclMode; write?: AclMode }

export interface TableInfo {
  name: string;
  acl: { read: AclMode; write: AclMode };
  created_at: string;
  updated_at: string;
  records?: number;
}

export interface FindOptions {
  /** At most this many records (default 100, at most 1000). */
  limit?: number;
  offset?: number;
  /** "field", "-field" (descending), or a comma-separated list; default: creation order. */
  order?: string | null;
}

export declare class Table {
  readonly name: string;
  constructor(name: string);
  /** Store a new record; resolves to it with id, created_at and updated_at. */
  insert(record: { [field: string]: Json }): Promise<StoredRecord>;
  /** The records matching `where` (all when omitted). */
  find(where?: Where | null, opts?: FindOptions): Promise<StoredRecord[]>;
  findOne(where?: Where | null, opts?: { order?: string | null }): Promise<StoredRecord | null>;
  /** The record with this id; rejects with an SdkError of type 'NotFound' when there is none. */
  get(id: string): Promise<StoredRecord>;
  count(where?: Where | null): Promise<number>;
  /** Set the patch's fields on every matching record ({} = all); resolves to how many changed. */
  update(where: Where, patch: { [field: string]: Json } | null, opts?: { ops?: { [field: string]: { inc: number } | { push: Json[] } | { remove: true } } }): Promise<number>;
  /** Delete every matching record ({} = all); resolves to how many. */
  delete(where: Where): Promise<number>;
}

export interface Db {
  /** A handle on a table (no call). Inserting into a missing table creates it, admin-only. */
  table(name: string): Table;
  createTable(name: string, acl?: Acl | null): Promise<TableInfo>;
  create_table(name: string, acl?: Acl | null): Promise<TableInfo>;
  setAcl(name: string, acl: Acl): Promise<TableInfo>;
  set_acl(name: string, acl: Acl): Promise<TableInfo>;
  /** Delete the table and its records; resolves to how many records went. */
  drop(name: string): Promise<number>;
  tables(): Promise<TableInfo[]>;
}

export interface RequestOptions {
  headers?: { [name: string]: string | number } | Array<[string, string]>;
  params?: { [name: string]: string } | URLSearchParams;
  /** Sent as JSON with Content-Type application/json. */
  json?: unknown;
  /** A string, a Buffer, or an object of form fields. */
  body?: string | Buffer | Uint8Array | { [field: string]: string };
  data?: string | Buffer | Uint8Array | { [field: string]: string };
  /** Seconds (default 10). */
  timeout?: number;
  followRedirects?: boolean;
  follow_redirects?: boolean;
}

export declare class Response {
  readonly status: number;
  /** The URL after redirects. */
  readonly url: string;
  /** Lower-case names; repeated headers joined with ", ". */
  readonly headers: { [name: string]: string };
  readonly body: Buffer;
  readonly text: string;
  readonly ok: boolean;
  json(): any;
}

type Method = (url: string, opts?: RequestOptions) => Promise<Response>;

export interface Http {
  /** One request; an HTTP error status resolves (see `ok`), a refused or failed request rejects. */
  request(method: string, url: string, opts?: RequestOptions): Promise<Response>;
  get: Method;
  head: Method;
  post: Method;
  put: Method;
  patch: Method;
  delete: Method;
}

type LogMethod = (...args: unknown[]) => void;

export interface Log {
  debug: LogMethod;
  info: LogMethod;
  warn: LogMethod;
  warning: LogMethod;
  error: LogMethod;
}

export declare class SdkError extends Error {
  /** e.g. 'NotFound', 'BadRequest', 'HttpDenied', 'HttpTimeout', 'CredentialRefused', 'NotAvailableOutside'. */
  readonly type: string;
  readonly status?: number;
  constructor(message: string, type?: string, status?: number);
}

export declare const db: Db;
export declare const http: Http;
export declare const log: Log;
