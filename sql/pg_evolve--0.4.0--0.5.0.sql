-- pg_evolve 0.4.0 -> 0.5.0: a reviewer sees what approving a proposal would do before approving
-- it. Run by ALTER EXTENSION pg_evolve UPDATE, and the end of a fresh install too.
--
-- propose_schema stores in each pending proposal's evidence (jsonb: no DDL) its verdict,
-- recomputed on every run: `compatibility` (the type's mode, `compatible`, every reason, as
-- check_compatibility gives them for the definition approval would write) and `impact` (the
-- entities approval would re-embed, their priority, the estimated seconds, as analyze_impact
-- gives them). approve_proposal gains `force`: an approval that would break the type's mode is
-- refused with 55000, as register_schema refuses the change, unless the reviewer forces it; the
-- history row of a forced approval says so and keeps the reasons.

-- src/review.rs: approve_proposal_forcible (0.4.0's three-argument _approve_proposal stays,
-- so that a database not yet updated keeps working against this library).
CREATE OR REPLACE FUNCTION evolve."_approve_proposal"(
	"id" bigint, /* Option < i64 > */
	"reviewer" TEXT, /* Option < String > */
	"notes" TEXT, /* Option < String > */
	"force" bool /* Option < bool > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'approve_proposal_forcible_wrapper';
REVOKE ALL ON FUNCTION evolve._approve_proposal(bigint, text, text, boolean) FROM PUBLIC;

DROP FUNCTION evolve.approve_proposal(bigint, text, text);
CREATE FUNCTION evolve.approve_proposal(id bigint, reviewer text DEFAULT current_user, notes text DEFAULT NULL,
                                        force boolean DEFAULT false)
RETURNS evolve.schema_evolution_history
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN evolve._history_row(evolve._approve_proposal($1, $2, $3, $4));
END
$$;
REVOKE ALL ON FUNCTION evolve.approve_proposal(bigint, text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.approve_proposal(bigint, text, text, boolean) TO evolve_admin;
COMMENT ON FUNCTION evolve.approve_proposal(bigint, text, text, boolean) IS
    'Applies a pending proposal in a subtransaction (members of evolve_admin only, else 42501) and returns its history row; on failure nothing changes but the history row (success false, sqlstate, error). An approval that would break the type''s compatibility mode (see the proposal''s evidence->''compatibility'') is refused with 55000 unless force is true; a forced approval is recorded as such in its history row (details->''forced'', details->''incompatibilities'').';
