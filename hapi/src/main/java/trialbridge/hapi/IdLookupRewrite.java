package trialbridge.hapi;

import java.util.concurrent.atomic.AtomicBoolean;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.hibernate.resource.jdbc.spi.StatementInspector;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * HAPI resolves client-assigned resource ids (FHIR ids) to its row ids with one query per batch of up
 * to 800 ids whose condition is an OR of pairs: {@code a.RES_TYPE=? and a.FHIR_ID=? or a.RES_TYPE=?
 * and a.FHIR_ID=? or ...}. H2 uses no index for an OR of ANDs: it reads every row of HFJ_RESOURCE
 * and compares it with every pair (about 1.6 s per batch of 800 at 20,000 resources). A bulk export
 * runs that query for every id it writes (its write step searches the ids again by {@code _id}), so
 * on this harness the export's time was nearly all this scan.
 *
 * <p>This inspector gives H2 the same condition as a row-value IN list, {@code (a.RES_TYPE,a.FHIR_ID)
 * in ((?,?),(?,?),...)}: the same parameters in the same order, the same rows, and H2 answers it
 * through its FHIR_ID index (about 70 ms per batch of 800). Only that exact run of pairs is
 * rewritten, and only where it is the whole condition or the whole of a parenthesised one; every
 * other statement passes unchanged. A server on PostgreSQL does not need this.
 */
public class IdLookupRewrite implements StatementInspector {

	private static final Logger ourLog = LoggerFactory.getLogger(IdLookupRewrite.class);
	private static final Pattern FIRST_PAIR = Pattern.compile("(\\w+)\\.RES_TYPE=\\? and \\1\\.FHIR_ID=\\?");
	private static final AtomicBoolean ourLogged = new AtomicBoolean();
	private static final AtomicBoolean ourUnmatchedLogged = new AtomicBoolean();

	@Override
	public String inspect(String theSql) {
		if (!theSql.contains(".FHIR_ID=? or ")) {
			return theSql;
		}
		Matcher m = FIRST_PAIR.matcher(theSql);
		while (m.find()) {
			String alias = m.group(1);
			String pair = alias + ".RES_TYPE=? and " + alias + ".FHIR_ID=?";
			int start = m.start();
			int end = m.end();
			int pairs = 1;
			while (theSql.startsWith(" or " + pair, end)) {
				end += 4 + pair.length();
				pairs++;
			}
			if (pairs > 1 && isWholeCondition(theSql, start, end)) {
				String rewritten = theSql.substring(0, start) + inList(alias, pairs) + theSql.substring(end);
				if (ourLog.isDebugEnabled()) {
					ourLog.debug("rewritten ({} pairs): {}", pairs, theSql.substring(0, start));
				}
				if (ourLogged.compareAndSet(false, true)) {
					ourLog.info("id lookups of several (type, id) pairs are asked as a row-value IN list: {}",
							theSql.substring(0, start) + "(" + alias + ".RES_TYPE,"  + alias + ".FHIR_ID) in (...)"
									+ theSql.substring(end));
				}
				return rewritten;
			}
			m.region(end, theSql.length());
		}
		if (ourUnmatchedLogged.compareAndSet(false, true)) {
			ourLog.warn("an id lookup of a shape not rewritten: {}", theSql.substring(0, Math.min(400, theSql.length())));
		}
		return theSql;
	}

	/** The run is the whole WHERE condition, or all of a parenthesised condition. */
	private static boolean isWholeCondition(String theSql, int theStart, int theEnd) {
		if (theStart > 0 && theSql.charAt(theStart - 1) == '(' && theEnd < theSql.length()
				&& theSql.charAt(theEnd) == ')') {
			return true;
		}
		String after = theSql.substring(theEnd);
		return theSql.startsWith("where ", theStart - 6)
				&& !after.startsWith(" and ")
				&& !after.startsWith(" or ");
	}

	private static String inList(String theAlias, int thePairs) {
		StringBuilder b = new StringBuilder(thePairs * 6 + 64);
		b.append('(').append(theAlias).append(".RES_TYPE,").append(theAlias).append(".FHIR_ID) in (");
		for (int i = 0; i < thePairs; i++) {
			b.append(i == 0 ? "(?,?)" : ",(?,?)");
		}
		return b.append(')').toString();
	}
}
