--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: data_records; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.data_records (
    table_name character varying(63) NOT NULL,
    id character varying(32) NOT NULL,
    created_by character varying(32),
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    data jsonb NOT NULL
);


--
-- Name: data_tables; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.data_tables (
    name character varying(63) NOT NULL,
    read_acl character varying(16) NOT NULL,
    write_acl character varying(16) NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL
);


--
-- Name: data_tokens; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.data_tokens (
    token_hash character varying(64) NOT NULL,
    user_id character varying(32) NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL
);


--
-- Name: data_users; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.data_users (
    id character varying(32) NOT NULL,
    username character varying(64) NOT NULL,
    password_hash character varying(255) NOT NULL,
    created_at double precision NOT NULL
);


--
-- Name: functions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.functions (
    name character varying(63) NOT NULL,
    active_version integer,
    last_version integer NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL
);


--
-- Name: invocations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.invocations (
    id character varying(32) NOT NULL,
    function character varying(63) NOT NULL,
    version integer,
    mode character varying(8) NOT NULL,
    status character varying(16) NOT NULL,
    attempts integer NOT NULL,
    cold boolean,
    instance_id character varying(32),
    created_at double precision NOT NULL,
    started_at double precision,
    finished_at double precision,
    duration_ms double precision,
    event text,
    result text,
    error text,
    logs text,
    next_attempt_at double precision,
    expires_at double precision,
    owner character varying(64)
);


--
-- Name: versions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.versions (
    function character varying(63) NOT NULL,
    number integer NOT NULL,
    status character varying(16) NOT NULL,
    runtime character varying(32) NOT NULL,
    handler character varying(255) NOT NULL,
    memory_mb integer NOT NULL,
    timeout_s double precision NOT NULL,
    env text NOT NULL,
    resident integer NOT NULL,
    public boolean NOT NULL,
    bundle_hash character varying(64) NOT NULL,
    bundle_bytes integer NOT NULL,
    layer_key character varying(64),
    build_log text NOT NULL,
    error text,
    created_at double precision NOT NULL,
    finished_at double precision
);


--
-- Data for Name: data_records; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.data_records VALUES ('notes', '01a22c5fe7de0000b1de129188be', NULL, 1796040812.51, 1796040812.51, '{"n": 0, "tags": ["a", "ü"], "text": "first", "nested": {"x": 0}}');
INSERT INTO public.data_records VALUES ('notes', '01a22c5fe8090000086093cd3215', '01a22c5fe76c0000d07128ac21b6', 1796040812.553, 1796040812.553, '{"n": 1, "tags": ["a", "ü"], "text": "second", "nested": {"x": 1}}');
INSERT INTO public.data_records VALUES ('notes', '01a22c5fe82300004cd7d7bb6fd4', '01a22c5fe76c0000d07128ac21b6', 1796040812.58, 1796040812.58, '{"n": 2, "tags": ["a", "ü"], "text": "third", "nested": {"x": 2}}');


--
-- Data for Name: data_tables; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.data_tables VALUES ('notes', 'authenticated', 'owner', 1796040812.366, 1796040812.366);
INSERT INTO public.data_tables VALUES ('empty', 'admin', 'admin', 1796040812.6, 1796040812.6);


--
-- Data for Name: data_tokens; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.data_tokens VALUES ('47f235518ad6b2afcf917c9bec67aa3aaae6c9ef2eda9c7ea89828954d7c7cef', '01a22c5fe76c0000d07128ac21b6', 1796040812.4126606, 1796645612.4126606);
INSERT INTO public.data_tokens VALUES ('f5e06d8e160fbba8cf627db9dd5d03f8d5f1719f42e3d5b204e57d904152ba42', '01a22c5fe795000048d1c48e86d6', 1796040812.47038, 1796645612.47038);


--
-- Data for Name: data_users; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.data_users VALUES ('01a22c5fe76c0000d07128ac21b6', 'alice', '$argon2id$v=19$m=1024,t=1,p=1$v4kmVAndeUwlpRreU0S4Nw$sp+oURDxcaPh5HrMkApsVIHBcKvW9Iu11wbWapaX/xo', 1796040812.398396);
INSERT INTO public.data_users VALUES ('01a22c5fe795000048d1c48e86d6', 'bob', '$argon2id$v=19$m=1024,t=1,p=1$7a0Ix1FkwlrOX4+Qm21ptA$5jh7DfiWBWy/aaXqDQIuIobXAB28FvrTMNtWVdj4hGY', 1796040812.4539568);


--
-- Data for Name: functions; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.functions VALUES ('hello', 2, 3, 1796040812.120882, 1796040812.2700064);
INSERT INTO public.functions VALUES ('other', 1, 1, 1796040812.2963903, 1796040812.3167386);


--
-- Data for Name: invocations; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.invocations VALUES ('01a22c5fe72a00004b3d88d8bec6', 'hello', 2, 'sync', 'succeeded', 1, true, 'inst1', 1796040812.330534, 1796040812.330534, 1796040812.340534, 10, NULL, '{"hello": "wörld"}', NULL, 'out
', NULL, NULL, NULL);
INSERT INTO public.invocations VALUES ('01a22c5fe72a00019b1c8839b631', 'hello', 2, 'sync', 'failed', 1, false, 'inst1', 1796040812.330534, 1796040812.330534, 1796040812.350534, 20, NULL, NULL, '{"type": "ValueError", "message": "bad", "stack": "..."}', 'err
', NULL, NULL, NULL);
INSERT INTO public.invocations VALUES ('01a22c5fe72a0002335b67e82406', 'hello', 2, 'async', 'queued', 0, NULL, NULL, 1796040812.330534, NULL, NULL, NULL, '{"n": 1}', NULL, NULL, NULL, 1796044412.330534, 1796044712.330534, NULL);


--
-- Data for Name: versions; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.versions VALUES ('hello', 1, 'ready', 'python3.11', 'index.main', 128, 10, '{"GREETING":"hi 1"}', 0, false, '0000000000000000000000000000000000000000000000000000000000000001', 123, NULL, 'built 1
', NULL, 1796040812.120882, 1796040812.1740623);
INSERT INTO public.versions VALUES ('hello', 2, 'ready', 'python3.11', 'index.main', 128, 10, '{"GREETING":"hi 2"}', 0, false, '0000000000000000000000000000000000000000000000000000000000000002', 123, NULL, 'built 2
', NULL, 1796040812.2060785, 1796040812.2388783);
INSERT INTO public.versions VALUES ('hello', 3, 'failed', 'python3.11', 'index.main', 128, 10, '{}', 0, false, 'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff', 123, NULL, 'pip failed
', 'build failed', 1796040812.2700064, 1796040812.282436);
INSERT INTO public.versions VALUES ('other', 1, 'ready', 'python3.11', 'index.main', 256, 10, '{}', 0, false, 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 123, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', '', NULL, 1796040812.2963903, 1796040812.3167386);


--
-- Name: data_records data_records_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.data_records
    ADD CONSTRAINT data_records_pkey PRIMARY KEY (table_name, id);


--
-- Name: data_tables data_tables_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.data_tables
    ADD CONSTRAINT data_tables_pkey PRIMARY KEY (name);


--
-- Name: data_tokens data_tokens_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.data_tokens
    ADD CONSTRAINT data_tokens_pkey PRIMARY KEY (token_hash);


--
-- Name: data_users data_users_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.data_users
    ADD CONSTRAINT data_users_pkey PRIMARY KEY (id);


--
-- Name: data_users data_users_username_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.data_users
    ADD CONSTRAINT data_users_username_key UNIQUE (username);


--
-- Name: functions functions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.functions
    ADD CONSTRAINT functions_pkey PRIMARY KEY (name);


--
-- Name: invocations invocations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.invocations
    ADD CONSTRAINT invocations_pkey PRIMARY KEY (id);


--
-- Name: versions versions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.versions
    ADD CONSTRAINT versions_pkey PRIMARY KEY (function, number);


--
-- Name: ix_data_records_table_created_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_data_records_table_created_at ON public.data_records USING btree (table_name, created_at);


--
-- Name: ix_data_records_table_created_by; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_data_records_table_created_by ON public.data_records USING btree (table_name, created_by);


--
-- Name: ix_data_tokens_user; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_data_tokens_user ON public.data_tokens USING btree (user_id);


--
-- Name: ix_invocations_function_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_invocations_function_created ON public.invocations USING btree (function, created_at);


--
-- Name: ix_invocations_status_next; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_invocations_status_next ON public.invocations USING btree (status, next_attempt_at);


--
-- Name: versions versions_function_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.versions
    ADD CONSTRAINT versions_function_fkey FOREIGN KEY (function) REFERENCES public.functions(name) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--


