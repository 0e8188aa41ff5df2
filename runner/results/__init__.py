"""Results on the controller: node records merged per experiment (`merge`), summaries (`summary`).

Layout under the results directory (default `results/` in the repository):

    .nodes/<node>/records.sqlite3   the node's records, a consistent snapshot fetched by collect.yml
    .nodes/<node>/journal.json      the node's instance journal (journalctl -o json)
    <experiment>/results.sqlite3    every row of the experiment's instances from every node, with `node`
    <experiment>/logs/<id>.log      each instance's journal lines, rendered from the `logs` table
"""
