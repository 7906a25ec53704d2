// Validate XML files against XML Schemas with the JDK's own validator (javax.xml.validation),
// so that the tests need no XML library beyond what the machine has.
//
//     java ValidateXsd.java SCHEMA.xsd[,OTHER.xsd...] FILE.xml [FILE.xml ...]
//
// Checks every file against every schema (one JVM start for all) and prints one line
// per pair: "valid SCHEMA FILE" or "invalid SCHEMA FILE: line L column C: message";
// exits 0 when every pair is valid, 1 otherwise, 2 on bad usage.
import java.io.File;
import javax.xml.XMLConstants;
import javax.xml.transform.stream.StreamSource;
import javax.xml.validation.Schema;
import javax.xml.validation.SchemaFactory;
import javax.xml.validation.Validator;
import org.xml.sax.SAXParseException;

public class ValidateXsd {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: java ValidateXsd.java SCHEMA.xsd[,OTHER.xsd...] FILE.xml [FILE.xml ...]");
            System.exit(2);
        }
        SchemaFactory factory = SchemaFactory.newInstance(XMLConstants.W3C_XML_SCHEMA_NS_URI);
        boolean ok = true;
        for (String schemaPath : args[0].split(",")) {
            Schema schema = factory.newSchema(new File(schemaPath));
            for (int i = 1; i < args.length; i++) {
                Validator validator = schema.newValidator();
                try {
                    validator.validate(new StreamSource(new File(args[i])));
                    System.out.println("valid " + schemaPath + " " + args[i]);
                } catch (SAXParseException e) {
                    ok = false;
                    System.out.println("invalid " + schemaPath + " " + args[i] + ": line " + e.getLineNumber()
                            + " column " + e.getColumnNumber() + ": " + e.getMessage());
                }
            }
        }
        System.exit(ok ? 0 : 1);
    }
}
